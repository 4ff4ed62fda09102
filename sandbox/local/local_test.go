package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

func open(t *testing.T, p *Provider, spec runtime.SandboxSpec) *Sandbox {
	t.Helper()
	if p.BaseDir == "" {
		p.BaseDir = t.TempDir()
	}
	sb, err := p.Open(context.Background(), spec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb.(*Sandbox)
}

func run(t *testing.T, sb *Sandbox, req runtime.ExecRequest) (runtime.ExecResult, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	req.Stdout, req.Stderr = &out, &errb
	res, err := sb.Exec(context.Background(), req)
	if err != nil {
		t.Fatalf("Exec %v: %v", req.Args, err)
	}
	return res, out.String(), errb.String()
}

func TestWarnsOnce(t *testing.T) {
	var warn bytes.Buffer
	p := New(&warn)
	open(t, p, runtime.SandboxSpec{Name: "a"})
	open(t, p, runtime.SandboxSpec{Name: "b"})
	if got := warn.String(); got != Warning+"\n" {
		t.Errorf("warning output %q, want one line %q", got, Warning)
	}
}

func TestExecWorkspaceStdinEnv(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "s"})
	ctx := context.Background()
	if err := sb.WriteFile(ctx, "/workspace/input", []byte("from-file"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, out, errOut := run(t, sb, runtime.ExecRequest{
		Args:  []string{"sh", "-c", `cat /workspace/input; echo; cat; echo; echo "$HOME|$GREETING|$(pwd)"; echo oops >&2; exit 3`},
		Env:   map[string]string{"GREETING": "hi /workspace/x"},
		Dir:   "/workspace",
		Stdin: strings.NewReader("from-stdin"),
	})
	want := "from-file\nfrom-stdin\n" + sb.Dir() + "|hi " + sb.Dir() + "/x|" + sb.Dir() + "\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if errOut != "oops\n" || res.ExitCode != 3 || res.Signal != "" || res.TimedOut {
		t.Errorf("stderr %q, result %+v", errOut, res)
	}
	if err := sb.WriteFile(ctx, "/workspace/sub/dir/f", []byte("x"), 0o600); err != nil {
		t.Fatalf("nested write: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(sb.Dir(), "sub/dir/f")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("nested file: %v %v", fi, err)
	}
	got, err := sb.ReadFile(ctx, "/workspace/sub/dir/f")
	if err != nil || string(got) != "x" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
}

func TestPathEscapesRefused(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "s"})
	ctx := context.Background()
	if err := os.Symlink("/", filepath.Join(sb.Dir(), "escape")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.Symlink(outside, filepath.Join(sb.Dir(), "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/etc/passwd", "workspace/x", "/workspace/../etc/passwd", "/workspace/a/../../x",
		"/workspacex/y", "/workspace/escape/etc/hostname", "/workspace/link",
	} {
		if err := sb.WriteFile(ctx, p, []byte("x"), 0o644); err == nil {
			t.Errorf("WriteFile(%q) succeeded", p)
		}
		if _, err := sb.ReadFile(ctx, p); err == nil {
			t.Errorf("ReadFile(%q) succeeded", p)
		}
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write through a symlink reached %s", outside)
	}
	err := sb.WriteFile(ctx, "/workspace/../etc/passwd", nil, 0o644)
	if err == nil || !strings.Contains(err.Error(), `contains ".."`) {
		t.Errorf("error %v should say the path contains \"..\"", err)
	}
	if _, err := sb.Exec(ctx, runtime.ExecRequest{Args: []string{"true"}, Dir: "/tmp"}); err == nil {
		t.Error("Exec with Dir outside /workspace succeeded")
	}
}

func TestMountsAndAllow(t *testing.T) {
	_, err := New(nil).Open(context.Background(), runtime.SandboxSpec{Name: "m", Mounts: []runtime.Mount{{Host: "/data", Guest: "/data"}}})
	if err == nil || !strings.Contains(err.Error(), "does not support mounts") {
		t.Errorf("mount error = %v", err)
	}
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "a", Allow: []string{"echo"}})
	if _, err := sb.Exec(context.Background(), runtime.ExecRequest{Args: []string{"sh", "-c", "true"}}); err == nil || !strings.Contains(err.Error(), "allow list") {
		t.Errorf("allowlist error = %v", err)
	}
	if res, out, _ := run(t, sb, runtime.ExecRequest{Args: []string{"echo", "ok"}}); res.ExitCode != 0 || out != "ok\n" {
		t.Errorf("allowed echo: %+v %q", res, out)
	}
}

func TestMissingCommand(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "nocmd"})
	_, err := sb.Exec(context.Background(), runtime.ExecRequest{Args: []string{"no-such-binary-voidbox"}})
	if !errors.Is(err, runtime.ErrCommandNotFound) || err.Error() != "executable file not found in the host's $PATH" {
		t.Errorf("missing binary: error %v, want runtime.ErrCommandNotFound naming the host's $PATH", err)
	}
	_, err = sb.Exec(context.Background(), runtime.ExecRequest{Args: []string{"./missing"}})
	if !errors.Is(err, runtime.ErrCommandNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing ./missing: error %v, want runtime.ErrCommandNotFound", err)
	}
}

// gone waits until pid no longer exists (or is a zombie awaiting its reaper).
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %d still running", pid)
}

func readPid(t *testing.T, sb *Sandbox) int {
	t.Helper()
	b, err := sb.ReadFile(context.Background(), "/workspace/pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func TestTimeoutKillsGroup(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "s"})
	start := time.Now()
	res, _, _ := run(t, sb, runtime.ExecRequest{
		Args:    []string{"sh", "-c", "sleep 30 & echo $! > /workspace/pid; wait"},
		Timeout: 200 * time.Millisecond,
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Exec took %v with a 200ms timeout", d)
	}
	if !res.TimedOut || res.ExitCode != -1 || res.Signal != "SIGKILL" {
		t.Errorf("result %+v, want a SIGKILLed timeout", res)
	}
	gone(t, readPid(t, sb))
}

func TestBackgroundChildKilledAfterExit(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "s"})
	start := time.Now()
	// The background sleep keeps stdout open; Exec must not wait for it.
	res, _, _ := run(t, sb, runtime.ExecRequest{Args: []string{"sh", "-c", "sleep 30 & echo $! > /workspace/pid"}})
	if d := time.Since(start); d > 5*time.Second || res.ExitCode != 0 {
		t.Errorf("Exec took %v, result %+v", d, res)
	}
	gone(t, readPid(t, sb))
}

func TestCancelAndClose(t *testing.T) {
	p := New(nil)
	p.BaseDir = t.TempDir()
	sb := open(t, p, runtime.SandboxSpec{Name: "s"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := sb.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", "echo $$ > /workspace/pid; exec sleep 30"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Exec error %v, want context.Canceled", err)
	}
	gone(t, readPid(t, sb))
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(p.BaseDir); len(entries) != 0 {
		t.Errorf("temp dirs left after Close: %v", entries)
	}
	if _, err := sb.Exec(context.Background(), runtime.ExecRequest{Args: []string{"true"}}); err == nil {
		t.Error("Exec after Close succeeded")
	}
}

func TestRewrite(t *testing.T) {
	for in, want := range map[string]string{
		"/workspace":                  "/W",
		"/workspace/input":            "/W/input",
		"cat /workspace/input > x":    "cat /W/input > x",
		"'/workspace'":                "'/W'",
		"/workspaces/x":               "/workspaces/x",
		"/x/workspace/y":              "/x/workspace/y",
		"a:/workspace:/workspace/bin": "a:/W:/W/bin",
		"/workspace.bak":              "/workspace.bak",
		"no workspace here":           "no workspace here",
	} {
		if got := rewrite(in, "/W"); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRel(f *testing.F) {
	for _, s := range []string{"/workspace", "/workspace/a/b", "/workspace/../x", "//workspace//a/", "/workspace/./a", "rel", ""} {
		f.Add(s)
	}
	sb := &Sandbox{name: "fuzz"}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := sb.rel(p)
		if err != nil {
			return
		}
		if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "/../") {
			t.Errorf("rel(%q) = %q escapes the workspace", p, rel)
		}
		if !filepath.IsLocal(rel) {
			t.Errorf("rel(%q) = %q is not local", p, rel)
		}
	})
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{"/workspace", "cat /workspace/input", "/workspaces", "x/workspace"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := rewrite(s, "/W")
		if !strings.Contains(s, Workspace) && got != s {
			t.Errorf("rewrite(%q) = %q changed a string without %s", s, got, Workspace)
		}
	})
}

func TestLargeStreams(t *testing.T) {
	sb := open(t, New(nil), runtime.SandboxSpec{Name: "s"})
	// A child that ignores a large stdin must not hang Exec.
	res, _, _ := run(t, sb, runtime.ExecRequest{Args: []string{"true"}, Stdin: strings.NewReader(strings.Repeat("x", 4<<20))})
	if res.ExitCode != 0 {
		t.Errorf("true: %+v", res)
	}
	// All output written before exit arrives, even past the pipe buffer size.
	res, out, _ := run(t, sb, runtime.ExecRequest{Args: []string{"sh", "-c", "head -c 3000000 /dev/zero"}})
	if res.ExitCode != 0 || len(out) != 3000000 {
		t.Errorf("got %d bytes, result %+v", len(out), res)
	}
	res, out, _ = run(t, sb, runtime.ExecRequest{Args: []string{"cat"}, Stdin: strings.NewReader(strings.Repeat("y", 1<<20))})
	if res.ExitCode != 0 || len(out) != 1<<20 {
		t.Errorf("cat echoed %d bytes, result %+v", len(out), res)
	}
}

// Skills are validated by the DSL but bound to nothing yet: a box that names one is
// refused, never run as if it had them.
func TestSkillsRefused(t *testing.T) {
	_, err := New(nil).Open(context.Background(), runtime.SandboxSpec{Name: "s", Skills: []runtime.Skill{{Kind: runtime.SkillCLI, Name: "git"}}})
	if !errors.Is(err, runtime.ErrUnsupported) || !strings.Contains(err.Error(), "box s: skills are not supported by this sandbox yet") {
		t.Errorf("skills error = %v", err)
	}
}

// What the local sandbox cannot honour is refused, never run as if it were.
func TestNetworkAndImageRefused(t *testing.T) {
	for _, tc := range []struct {
		spec runtime.SandboxSpec
		want string
	}{
		{runtime.SandboxSpec{Name: "n", Network: true, Egress: []string{"example.test:443"}}, "box n: network = True: the local sandbox cannot enforce an egress policy"},
		{runtime.SandboxSpec{Name: "i", Image: "alpine:3"}, `box i: image = "alpine:3": the local sandbox runs host processes`},
	} {
		_, err := New(nil).Open(context.Background(), tc.spec)
		if !errors.Is(err, runtime.ErrUnsupported) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error = %v, want one containing %q", tc.spec, err, tc.want)
		}
	}
}
