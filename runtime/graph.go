package runtime

import "time"

// Node is one element of a stage graph: a *Stage, a *Pipe or a *FanOut.
type Node interface {
	// Stages lists the stages under this node in declaration order.
	Stages() []*Stage
	node()
}

// FailurePolicy says what a stage failure does to the rest of the run.
type FailurePolicy string

const (
	// FailStop cancels running siblings and skips stages that have not started.
	FailStop FailurePolicy = "stop"
	// FailContinue lets the run go on; the failed stage's output is empty.
	FailContinue FailurePolicy = "continue"
)

// A stage's memory, in MiB. MinMemoryMB is the smallest box the default guest
// image boots and runs a command in (tested at exactly this value by a real
// VM test in sandbox/vm); Debian's cloud kernel needs MinMemoryMBDebianKernel.
const (
	MinMemoryMB             = 64
	MaxMemoryMB             = 65536
	MinMemoryMBDebianKernel = 128
)

// MountMode is the access a guest gets to a host mount.
type MountMode string

const (
	MountRO MountMode = "ro"
	MountRW MountMode = "rw"
)

// Mount binds a host directory into a stage's sandbox.
type Mount struct {
	Host  string // absolute host path
	Guest string // absolute guest path
	Mode  MountMode
}

// SkillKind names the kind of a skill.
type SkillKind string

const (
	SkillFile   SkillKind = "file"   // a SKILL/markdown file handed to an agent
	SkillAgent  SkillKind = "agent"  // a coding agent, e.g. claude-code
	SkillCLI    SkillKind = "cli"    // a command-line tool expected in the guest
	SkillMCP    SkillKind = "mcp"    // an MCP server command
	SkillRemote SkillKind = "remote" // a remote MCP endpoint
	SkillImage  SkillKind = "image"  // an OCI image mounted read-only
)

// Skill is a capability bound to a stage.
type Skill struct {
	Kind        SkillKind
	Name        string            // agent or CLI name, file base name, image ref
	Path        string            // SkillFile: where it was read from (host path or @stdlib//...)
	Content     string            // SkillFile: the file's text, read when skill() is called
	Command     string            // SkillMCP: the server command
	Args        []string          // SkillMCP
	Env         map[string]string // SkillMCP
	URL         string            // SkillRemote
	Image       string            // SkillImage: OCI reference
	MountPath   string            // SkillImage: guest mount point
	Description string
}

// LLM selects the model behind an agent stage.
type LLM struct {
	Provider  string // "claude", "ollama", "custom"
	Model     string
	BaseURL   string
	APIKeyEnv string
}

// Stage is one box: a command or an agent run in its own sandbox.
type Stage struct {
	Name      string
	Cmd       []string // exactly one of Cmd or Prompt is set
	Prompt    string
	Image     string
	Skills    []Skill
	LLM       *LLM
	MemoryMB  int
	VCPUs     int
	Network   bool
	Egress    []string
	Ports     []PortMap // guest TCP ports published on the host's 127.0.0.1
	Mounts    []Mount
	Env       map[string]string
	Timeout   time.Duration
	Retries   int
	OnFailure FailurePolicy
	Allow     []string // command allowlist; empty allows any
	Pos       string   // where the box was declared, "file.star:3:7"
	// Steps make the stage a workflow (Cmd and Prompt empty): its steps run as a DAG
	// in the stage's one sandbox (workflow.go). OutputStep names the step whose stdout
	// is the stage's output; "" means the last step declared.
	Steps      []Step
	OutputStep string
	// OutputFile, for an agent stage, is a file under /workspace whose content becomes
	// the stage's output instead of the agent's answer.
	OutputFile string
}

// Pipe runs its nodes in sequence; each node's output is the next one's input.
type Pipe struct{ Nodes []Node }

// FanOut runs its nodes concurrently; its output is a JSON array of their outputs.
type FanOut struct{ Nodes []Node }

func (*Stage) node()  {}
func (*Pipe) node()   {}
func (*FanOut) node() {}

func (s *Stage) Stages() []*Stage  { return []*Stage{s} }
func (p *Pipe) Stages() []*Stage   { return collect(p.Nodes) }
func (f *FanOut) Stages() []*Stage { return collect(f.Nodes) }

func collect(nodes []Node) []*Stage {
	var out []*Stage
	for _, n := range nodes {
		out = append(out, n.Stages()...)
	}
	return out
}
