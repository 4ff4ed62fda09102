package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// confinedEnv starts a production-mode server (shim, uid 1000, rlimits, seccomp)
// whose directories the stage user can enter.
func confinedEnv(t *testing.T, opts Options) *env {
	if os.Geteuid() != 0 {
		t.Skip("switching to uid 1000 needs root; run the tests as root")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.ShimPath = self
	e := start(t, opts)
	for d := e.ws; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func TestConfinedExecPolicy(t *testing.T) {
	e := confinedEnv(t, Options{Rlimits: proto.Rlimits{NOFILE: 77, FSIZE: 1 << 20, NPROC: 1000, CPU: 60}})
	var out, errb bytes.Buffer
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args:   []string{"sh", "-c", `id -u; id -g; id -G; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; ulimit -n; ulimit -f`},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v; stderr %q", res, err, errb.String())
	}
	want := "1000\n1000\n1000\nNoNewPrivs:\t1\nSeccomp:\t2\n77\n2048\n"
	if out.String() != want {
		t.Errorf("confined process reports\n%s\nwant\n%s", out.String(), want)
	}
}

// TestConfinedSyscallsDenied runs the stage probe (seccomp_probe_test.go) as a
// confined stage on this host's kernel: every call the filter must refuse is refused
// with its errno, the calls stages need pass, and the i386 and x32 programs die. The
// probe exits 1 when any result differs.
func TestConfinedSyscallsDenied(t *testing.T) {
	e := confinedEnv(t, Options{})
	// The stage user must be able to execute the probe: copy the test binary into the workspace.
	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(e.ws, "probe")
	if err := os.WriteFile(probe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	elves := filepath.Join(e.ws, "elves")
	if err := os.Mkdir(elves, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(elves, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{probe}, Env: map[string]string{
		"VOIDBOX_TEST_HELPER": "syscalls", envIA32: hostRunsI386(t), envELFDir: elves}, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("probe: %+v %v; stderr %q; report (see its MISMATCH lines):\n%s", res, err, errb.String(), out.String())
	}
}

// hostRunsI386 says whether this kernel runs i386 programs ("yes" or "no"), from an
// i386 exit(42) run outside the filter.
func hostRunsI386(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "exit42")
	if err := os.WriteFile(path, elf32(codeI386Exit42), 0o755); err != nil {
		t.Fatal(err)
	}
	switch got := runOutcome(path); got {
	case "exit:42":
		return "yes"
	case "exec:ENOEXEC":
		return "no"
	default:
		t.Fatalf("i386 exit(42) outside the filter ended %s; want exit:42, or exec:ENOEXEC without IA32 emulation", got)
		return ""
	}
}

func TestConfinedFileOwnership(t *testing.T) {
	e := confinedEnv(t, Options{})
	p := filepath.Join(e.ws, "dir/owned")
	if err := e.client.WriteFile(ctxT(t), p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, filepath.Dir(p)} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != proto.DefaultUID || st.Gid != proto.DefaultGID {
			t.Errorf("%s owned by %d:%d, want the stage user", f, st.Uid, st.Gid)
		}
	}
}

func TestConfinedShimReportsExecFailure(t *testing.T) {
	e := confinedEnv(t, Options{})
	prog := filepath.Join(e.ws, "rootonly")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho should not run\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{prog}})
	wantCode(t, "exec of a root-only program", err, proto.CodeExecFailed)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("error %v should say why the shim could not exec", err)
	}
}
