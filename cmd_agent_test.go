package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	cct "github.com/voidbox/voidbox/agent/claudecode/claudecodetest"
	"github.com/voidbox/voidbox/internal/debootstrap"
)

// agentEnv gives the agent commands a home (and so a cache) of their own
// and a fake registry serving version 1.2.3 (latest) and 1.0.0.
func agentEnv(t *testing.T) (home string, reg *cct.Registry) {
	t.Helper()
	home = t.TempDir()
	t.Setenv("HOME", home)
	reg = cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3"), "1.0.0": cct.GoodTarball(t, "1.0.0")})
	return home, reg
}

func TestAgentInstallAndList(t *testing.T) {
	home, reg := agentEnv(t)
	claude := filepath.Join(home, ".voidbox", "agents", "claude-code", "1.2.3", "claude")
	r := voidbox(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL)
	if r.code != exitOK || r.stdout != claude+"\n" || r.stderr != "" {
		t.Fatalf("install: code %d stdout %q stderr %q; want 0, the executable's path and nothing on stderr (not a terminal)", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(claude); err != nil || string(b) != cct.Script("1.2.3") {
		t.Fatalf("installed claude: %q, %v", b, err)
	}
	r = voidbox(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL)
	if r.code != exitOK || r.stdout != claude+"\n" || reg.TgzGets.Load() != 1 || reg.DocGets.Load() != 1 {
		t.Errorf("second install: code %d stdout %q, %d document and %d tarball requests in all; want the path and no new request",
			r.code, r.stdout, reg.DocGets.Load(), reg.TgzGets.Load())
	}
	if r := voidbox(t, "agent", "install", "--agent-version", "latest", "--registry", reg.URL); r.code != exitOK || r.stdout != claude+"\n" {
		t.Errorf("install latest: code %d stdout %q stderr %q; want 1.2.3's path", r.code, r.stdout, r.stderr)
	}
	if r := voidbox(t, "agent", "install", "--agent-version", "1.0.0", "--registry", reg.URL); r.code != exitOK {
		t.Fatalf("install 1.0.0: code %d stderr %q", r.code, r.stderr)
	}
	// An interrupted install of another version.
	if err := os.MkdirAll(filepath.Join(home, ".voidbox", "agents", "claude-code", "1.1.0"), 0o755); err != nil {
		t.Fatal(err)
	}

	r = voidbox(t, "agent", "ls")
	size := len(cct.Script("1.2.3"))
	want := []string{
		`^VERSION +SIZE +ROOT DISK +INSTALLED$`,
		`^1\.0\.0 +\d+ B +not built +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`,
		`^1\.1\.0 +- +- +incomplete \(voidbox agent install --agent-version 1\.1\.0 repairs it\)$`,
		`^1\.2\.3 +` + regexp.QuoteMeta(humanSize(int64(size))) + ` +not built +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`,
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != exitOK || len(lines) != len(want) {
		t.Fatalf("ls: code %d\n%s\nwant %d lines", r.code, r.stdout, len(want))
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("ls line %d = %q, want %s", i, lines[i], re)
		}
	}

	r = voidbox(t, "agent", "ls", "--json")
	var entries []agentEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 3 {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	e := entries[2]
	if e.Version != "1.2.3" || e.Path != claude || e.Size != int64(size) || e.Integrity != cct.Integrity(reg.Tarball("1.2.3")) ||
		len(e.SHA256) != 64 || e.Installed.IsZero() || e.Problem != "" || e.RootDisk != "" {
		t.Errorf("ls --json entry = %+v", e)
	}
	if entries[1].Problem == "" {
		t.Errorf("ls --json: the interrupted 1.1.0 has no problem: %+v", entries[1])
	}
}

func TestAgentListEmpty(t *testing.T) {
	agentEnv(t)
	if r := voidbox(t, "agent", "ls"); r.code != exitOK || strings.TrimSpace(r.stdout) != "VERSION  SIZE  ROOT DISK  INSTALLED" {
		t.Errorf("ls with nothing installed: code %d\n%q", r.code, r.stdout)
	}
	if r := voidbox(t, "agent", "ls", "--json"); r.code != exitOK || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("ls --json with nothing installed: code %d\n%q", r.code, r.stdout)
	}
}

func TestAgentErrors(t *testing.T) {
	_, reg := agentEnv(t)
	reg.SetIntegrity("1.0.0", cct.Integrity([]byte("not the tarball")))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "voidbox agent: want a subcommand: install or ls (got none)"},
		{[]string{"rm"}, exitUsage, `voidbox agent: want a subcommand: install or ls (got "rm")`},
		{[]string{"install", "1.2.3"}, exitUsage, `voidbox agent install: takes no arguments, got ["1.2.3"] (the version is --agent-version V)`},
		{[]string{"install", "--agent-version", "../../etc"}, exitUsage, `voidbox agent install: --agent-version: claude-code version "../../etc" is not a version: want MAJOR.MINOR.PATCH (e.g. 2.1.332) or "latest"`},
		{[]string{"install", "--registry", "http://registry.example.com"}, exitUsage, `voidbox agent install: --registry: registry "http://registry.example.com": plain http is allowed only to a loopback host; use https`},
		{[]string{"install", "--agent-version", "9.9.9", "--registry", reg.URL}, exitUsage, "voidbox agent install: claude-code 9.9.9 is not in the registry's @anthropic-ai/claude-code-linux-x64 (the latest is 1.2.3)"},
		{[]string{"install", "--agent-version", "1.0.0", "--registry", reg.URL}, exitFailed, "voidbox agent install: claude-code 1.0.0: download: the tarball " + reg.URL + "/tarballs/1.0.0.tgz has integrity " + cct.Integrity(reg.Tarball("1.0.0"))},
		{[]string{"install", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"ls", "x"}, exitUsage, `voidbox agent ls: takes no arguments, got ["x"]`},
	} {
		r := voidbox(t, append([]string{"agent"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("voidbox agent %q: code %d stderr %q; want %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	if r := voidbox(t, "agent", "--help"); r.code != exitOK || !strings.Contains(r.stdout, "voidbox agent install [--agent-version V]") {
		t.Errorf("agent --help: code %d stdout %q", r.code, r.stdout)
	}
	if r := voidbox(t, "--help"); !regexp.MustCompile(`\n  agent +install and list claude-code`).MatchString(r.stdout) {
		t.Errorf("voidbox --help does not list agent:\n%s", r.stdout)
	}
}

// On a terminal the download is a bar that ends verified, and a summary
// follows; a second install says it was already installed.
func TestAgentInstallOnTerminal(t *testing.T) {
	home, reg := agentEnv(t)
	r := voidboxOnTerminal(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL)
	if r.code != exitOK || r.stdout != filepath.Join(home, ".voidbox/agents/claude-code/1.2.3/claude")+"\n" {
		t.Fatalf("install: code %d stdout %q\n%q", r.code, r.stdout, r.stderr)
	}
	size := humanSize(int64(len(cct.Script("1.2.3"))))
	for _, re := range []string{
		`claude-code 1\.2\.3 \[=+\] \d+ B / \d+ B +verified`,
		`verified\r?\nclaude-code 1\.2\.3: downloaded, ` + regexp.QuoteMeta(size),
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("the terminal lacks %s:\n%q", re, r.stderr)
		}
	}
	noProgressGoroutines(t)
	r = voidboxOnTerminal(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL)
	if r.code != exitOK || strings.TrimSpace(r.stderr) != "claude-code 1.2.3: already installed, "+size {
		t.Errorf("second install on a terminal: code %d\n%q", r.code, r.stderr)
	}
}

// A refused download leaves its bar stopped and the error below it.
func TestAgentInstallRefusedOnTerminal(t *testing.T) {
	_, reg := agentEnv(t)
	reg.SetIntegrity("1.2.3", cct.Integrity([]byte("not the tarball")))
	r := voidboxOnTerminal(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL)
	if r.code != exitFailed || !regexp.MustCompile(`stopped\r?\nvoidbox agent install: claude-code 1\.2\.3: download: the tarball`).MatchString(r.stderr) {
		t.Errorf("install of a mismatching tarball: code %d\n%q", r.code, r.stderr)
	}
	noProgressGoroutines(t)
}

// --root-disk builds the version's root disk (a real debootstrap, about a
// minute) and ls shows it built.
func TestAgentInstallRootDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstraps Debian (about a minute and 35 MB of downloads); runs without -short")
	}
	if err := debootstrap.Check(); err != nil {
		t.Skip(err)
	}
	home, reg := agentEnv(t)
	r := voidbox(t, "agent", "install", "--agent-version", "1.2.3", "--registry", reg.URL, "--root-disk")
	dir := filepath.Join(home, ".voidbox/agents/claude-code/1.2.3")
	if r.code != exitOK || r.stdout != filepath.Join(dir, "claude")+"\n" {
		t.Fatalf("install --root-disk: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	out, err := exec.Command("debugfs", "-R", "cat /usr/local/bin/claude", filepath.Join(dir, "root.ext4")).Output()
	if err != nil || string(out) != cct.Script("1.2.3") {
		t.Errorf("/usr/local/bin/claude in the root disk: %q, %v; want the installed script", out, err)
	}
	if r := voidbox(t, "agent", "ls"); !regexp.MustCompile(`\n1\.2\.3 +\d+ B +built, \d+\.\d MiB +\d{4}-`).MatchString(r.stdout) {
		t.Errorf("ls after --root-disk:\n%s", r.stdout)
	}
}
