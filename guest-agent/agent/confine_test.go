package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
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
	var out, errb bytes.Buffer
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{probe},
		Env: map[string]string{"VOIDBOX_TEST_HELPER": "syscalls"}, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("probe: %+v %v; stderr %q", res, err, errb.String())
	}
	// keyctl succeeds for an unconfined uid 1000 and unshare fails with EINVAL in a
	// threaded process, so EPERM from them shows the seccomp filter is what denied.
	for _, name := range []string{"mount", "unshare", "ptrace", "reboot", "keyctl", "bpf", "clone-newuser", "clone-newnet"} {
		if !strings.Contains(out.String(), name+"=EPERM\n") {
			t.Errorf("%s not denied with EPERM; probe says:\n%s", name, out.String())
		}
	}
	for _, want := range []string{"clone-plain=ok\n", "clone3=ENOSYS\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("probe should say %q; it says:\n%s", want, out.String())
		}
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

func TestStageFilterCoversRequiredSyscalls(t *testing.T) {
	f := StageFilter()
	if _, err := f.Policy.Assemble(); err != nil {
		t.Fatalf("filter does not assemble: %v", err)
	}
	for _, n := range []string{"mount", "kexec_load", "init_module", "finit_module", "delete_module", "ptrace", "bpf", "reboot", "keyctl", "unshare"} {
		if !slices.Contains(deniedSyscalls, n) {
			t.Errorf("%s is not denied", n)
		}
	}
	if !f.NoNewPrivs {
		t.Error("filter must set no_new_privs")
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
