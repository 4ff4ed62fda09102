package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/internal/vmtest"
)

// TestStageSeccompInRealVM boots the real agent and runs, as a stage under the guest
// kernel, the stage probe of package agent (its test binary, built static): the calls
// the seccomp allow-list refuses (io_uring, keyctl, AF_VSOCK and AF_PACKET sockets,
// personality(PER_LINUX32), modify_ldt, ...), the calls stages need, and i386 and x32
// programs calling unshare(CLONE_NEWUSER), which must die without a user namespace.
// The same programs then run straight from a stage's shell, and the busybox basics
// still work. Run it with VOIDBOX_TEST_KERNEL=debian too: only that kernel has IA32
// emulation, where the filter's architecture check is what stops the i386 calls.
func TestStageSeccompInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	probe := buildStageProbe(t)
	_, client := bootAgent(t, vmm, img)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := client.WriteFile(ctx, "/workspace/probe", probe, 0o755); err != nil {
		t.Fatalf("write the probe into the guest: %v", err)
	}
	// The voidbox kernel is built without IA32 emulation; Debian's has it.
	ia32 := map[string]string{guestimage.KernelVoidbox: "no", "debian": "yes"}[vmtest.KernelKind()]

	t.Run("probe", func(t *testing.T) {
		// The probe exits 1, and stageRun fails with its report, on any MISMATCH line.
		out := stageRun(ctx, t, client, map[string]string{"VOIDBOX_TEST_HELPER": "syscalls",
			"VOIDBOX_TEST_IA32": ia32, "VOIDBOX_TEST_ELF_DIR": "/workspace/foreign-arch"}, "/workspace/probe")
		t.Logf("probe report (kernel %s, IA32 %q):\n%s", vmtest.KernelKind(), ia32, out)
	})

	t.Run("foreign-arch-from-shell", func(t *testing.T) {
		// The shell reports a child killed by signal N as status 128+N.
		const sigsys, sigsegv = 128 + 31, 128 + 11
		out := stageRun(ctx, t, client, nil, `cd /workspace/foreign-arch || exit 1
for p in elf-i386-unshare elf-int80-unshare elf-x32-unshare; do ./$p >/dev/null 2>&1; echo "$p $?"; done`)
		t.Logf("statuses (kernel %s, IA32 %q):\n%s", vmtest.KernelKind(), ia32, out)
		want := map[string][]int{"elf-x32-unshare": {sigsys}}
		switch ia32 {
		case "yes":
			want["elf-i386-unshare"], want["elf-int80-unshare"] = []int{sigsys}, []int{sigsys}
		case "no":
			want["elf-int80-unshare"] = []int{sigsegv}
		}
		for _, name := range []string{"elf-i386-unshare", "elf-int80-unshare", "elf-x32-unshare"} {
			var status int
			if _, err := fmt.Sscanf(lineAfter(out, name+" "), "%d", &status); err != nil {
				t.Errorf("no status for %s in %q", name, out)
				continue
			}
			// Status 0 is a user namespace made; 255 is unshare's EPERM returned to a
			// program that then ran on, which only an errno arch rule would give.
			ok := status != 0 && status != 255
			if w := want[name]; len(w) > 0 {
				ok = w[0] == status
			}
			if !ok {
				t.Errorf("%s from a stage's shell ended with status %d; want %v (kernel %s, IA32 %q)", name, status, want[name], vmtest.KernelKind(), ia32)
			}
		}
	})

	t.Run("busybox", func(t *testing.T) {
		out := stageRun(ctx, t, client, nil, `echo hello world | tr a-z A-Z
printf 'b\na\nc\n' | sort | tr '\n' ' '; echo
printf abc | wc -c
printf abc | sha256sum
wget --help 2>&1 | grep -c 'Usage: wget'`)
		want := "HELLO WORLD\na b c \n3\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n1\n"
		if out != want {
			t.Errorf("busybox basics in a stage printed\n%q\nwant\n%q", out, want)
		}
	})
}

// stageRun runs script (or a program path, which sh runs) with sh -c as a stage and
// returns its stdout; it fails t unless the stage exits 0.
func stageRun(ctx context.Context, t *testing.T, client *proto.Client, env map[string]string, script string) string {
	t.Helper()
	var out, errb bytes.Buffer
	res, err := client.Exec(ctx, proto.ExecRequest{Args: []string{"sh", "-c", script}, Env: env, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("stage %q: %+v %v\nstdout:\n%s\nstderr:\n%s", script, res, err, out.String(), errb.String())
	}
	return out.String()
}

// lineAfter returns the rest of the first line of s that starts with prefix.
func lineAfter(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return rest
		}
	}
	return ""
}

// buildStageProbe builds package agent's test binary, static, to run in the guest as
// the stage probe (its TestMain turns it into the probe under VOIDBOX_TEST_HELPER).
func buildStageProbe(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "test", "-c", "-trimpath", "-ldflags=-s -w", "-o", out, "./agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the stage probe (go test -c ./agent): %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
