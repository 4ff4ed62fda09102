package runtime

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// Sandbox is a booted, isolated place to run a stage's processes: a microVM with a
// guest agent, a host process group (local) or a script (mock). One Sandbox serves
// one stage attempt and is closed by the executor when the attempt ends.
type Sandbox interface {
	// Exec runs a process and streams its output until it exits. A non-zero exit is
	// reported in ExecResult, not as an error; errors mean the process could not run or
	// the sandbox failed. The caller names the command (the executor reports
	// "exec ARGS0: ERR"), so errors say why without repeating Args[0]; a program that
	// does not exist wraps ErrCommandNotFound.
	Exec(ctx context.Context, req ExecRequest) (ExecResult, error)
	// WriteFile writes a file inside the sandbox's allowed roots.
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error
	// ReadFile reads a file inside the sandbox's allowed roots.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Close shuts the sandbox down and releases every process, socket and temp dir.
	Close() error
}

// ExecRequest describes one process to run in a Sandbox.
type ExecRequest struct {
	Args    []string
	Env     map[string]string
	Dir     string
	Stdin   io.Reader // nil means empty
	Stdout  io.Writer // nil discards
	Stderr  io.Writer // nil discards
	Timeout time.Duration
}

// ExecResult is how a process ended.
type ExecResult struct {
	ExitCode int    // -1 when killed by a signal
	Signal   string // e.g. "SIGKILL" when killed
	TimedOut bool
}

// ErrUnsupported is wrapped by a Provider's Open error when the stage asks for a
// capability that sandbox kind does not have: retrying cannot help, so the executor
// does not retry it.
var ErrUnsupported = errors.New("not supported by this sandbox")

// ErrCommandNotFound is wrapped by Sandbox.Exec when the program does not exist in the
// sandbox. Every sandbox words it the same way, saying where it looked:
// "executable file not found in the host's $PATH" (local), "... in the guest's $PATH"
// (vm). The search path is named, not listed: its value is the sandbox's business and
// long host PATHs buried the message.
var ErrCommandNotFound = errors.New("executable file not found")

// SandboxSpec is what a provider needs to open a sandbox for a stage.
type SandboxSpec struct {
	Name     string
	MemoryMB int
	VCPUs    int
	Image    string
	Network  bool
	Egress   []string
	Ports    []PortMap
	Mounts   []Mount
	Allow    []string
	Skills   []Skill
	// Agent says the stage is an agent (prompt=): the sandbox prepares for RunAgent
	// (the agent's program, its provider's proxy) as it opens.
	Agent bool
	LLM   *LLM
}

// Provider opens sandboxes of one kind.
type Provider interface {
	// Name is the sandbox kind, e.g. "vm", "local", "mock".
	Name() string
	Open(ctx context.Context, spec SandboxSpec) (Sandbox, error)
}
