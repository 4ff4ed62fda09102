package anthropictest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ClaudeEnv names the claude-code executable the contract tests run (the linux-x64 binary of
// the npm package @anthropic-ai/claude-code-linux-x64).
const ClaudeEnv = "VOIDBOX_TEST_CLAUDE"

// nobody is the unprivileged user claude runs as when the test runs as root: claude-code
// refuses --dangerously-skip-permissions as root.
const nobody = 65534

// ClaudeBinary returns the claude-code executable named by $VOIDBOX_TEST_CLAUDE. It skips the
// test in -short mode (a run takes seconds) and when the variable is unset, saying how to set
// it; it fails the test when the variable names no executable file.
func ClaudeBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real claude-code; run without -short")
	}
	bin := os.Getenv(ClaudeEnv)
	if bin == "" {
		t.Skipf("needs the real claude-code: set %s to the claude executable of npm's @anthropic-ai/claude-code-linux-x64", ClaudeEnv)
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s=%s: not an executable file (%v)", ClaudeEnv, bin, err)
	}
	return bin
}

// Claude is one headless claude-code run.
type Claude struct {
	Binary  string
	BaseURL string // ANTHROPIC_BASE_URL
	APIKey  string // ANTHROPIC_API_KEY
	Prompt  string
	Dir     string   // working directory, HOME and TMPDIR; empty is a fresh WorkDir
	Env     []string // more environment, KEY=VALUE
	// Files are written into the working directory before the run, by path relative to it
	// (".claude/skills/NAME/SKILL.md" makes a project skill).
	Files   map[string]string
	Timeout time.Duration
}

// WorkDir makes a fresh directory claude can use as its working directory, HOME and TMPDIR:
// as root, one owned by the user claude runs as.
func WorkDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// The temp dir's parent is root's and 0700: open the way down to dir only.
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Run runs claude -p Prompt --output-format stream-json --verbose
// --dangerously-skip-permissions in Dir (empty: a fresh WorkDir), which is also its HOME and
// TMPDIR, with non-essential traffic off; as root it runs as uid and gid 65534. It returns
// stdout (the stream-json events) and the exit error; a run that does not finish in Timeout
// (0 is two minutes) fails the test, a non-zero exit does not (an API error is one).
func (c Claude) Run(t testing.TB) (stdout []byte, exitErr error) {
	t.Helper()
	dir := c.Dir
	if dir == "" {
		dir = WorkDir(t)
	}
	for name, content := range c.Files {
		if err := writeOwned(dir, name, content); err != nil {
			t.Fatal(err)
		}
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binary, "-p", c.Prompt, "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions")
	cmd.Dir = dir
	cmd.Env = append([]string{
		"HOME=" + dir, "TMPDIR=" + dir, "PATH=/usr/local/bin:/usr/bin:/bin",
		"ANTHROPIC_BASE_URL=" + c.BaseURL, "ANTHROPIC_API_KEY=" + c.APIKey,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1",
	}, c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("claude -p %q did not finish in %s; stderr: %s; stdout: %s", c.Prompt, timeout, errOut.Bytes(), out.Bytes())
	}
	if errOut.Len() > 0 {
		t.Logf("claude stderr: %s", errOut.Bytes())
	}
	return out.Bytes(), err
}

// writeOwned writes dir/name, making its directories, all owned by the user claude runs as.
func writeOwned(dir, name, content string) error {
	if !filepath.IsLocal(name) {
		return fmt.Errorf("anthropictest: file %q is not a path inside the working directory", name)
	}
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	for p := path; p != dir; p = filepath.Dir(p) {
		if err := os.Chown(p, nobody, nobody); err != nil {
			return err
		}
	}
	return nil
}
