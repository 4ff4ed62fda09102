package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmtest"
)

// TestPrivateSecretAndOneSessionInRealVM boots the agent under QEMU from a state
// dir whose path has a comma, and checks, while a session is open: the boot config
// came through fw_cfg; QEMU's command line holds neither the secret nor the boot
// blob; a root voidbox runs QEMU as another user, chrooted; the fw_cfg file is gone
// from the host and its item from the guest; a second connection, even with the
// right secret, gets no session while the first goes on.
func TestPrivateSecretAndOneSessionInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	tmp, err := os.MkdirTemp("", "vb,c")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)

	m, client, secret, bootArg := bootAgentSecret(t, vmm, img)
	if !strings.Contains(m.StateDir(), ",") {
		t.Fatalf("state dir %s has no comma: the test proves nothing about escaping", m.StateDir())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	// A running stage, as the host sees QEMU while it works.
	res, err := client.Exec(ctx, proto.ExecRequest{Args: []string{"sh", "-c",
		"cat /sys/firmware/qemu_fw_cfg/by_name/opt/voidbox/boot/raw 2>/dev/null; echo rc=$?; echo fw_cfg: $(ls /sys/firmware/qemu_fw_cfg)"},
		Stdout: &out, Stderr: &out})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v %s", res, err, out.String())
	}
	// The agent unbound the fw_cfg driver after reading: the item is gone, not
	// merely unreadable.
	if got := out.String(); strings.Contains(got, secret) || got != "rc=1\nfw_cfg:\n" {
		t.Errorf("a stage sees the fw_cfg boot item:\n%s", got)
	}

	pid := m.Pid()
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	blob := strings.TrimPrefix(bootArg, "voidbox.boot=")
	for _, leak := range []string{secret, blob, "voidbox.boot="} {
		if bytes.Contains(cmdline, []byte(leak)) {
			t.Errorf("QEMU's /proc/%d/cmdline holds %.24q...", pid, leak)
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	uids := statusField(string(status), "Uid")
	if os.Geteuid() == 0 {
		for _, u := range uids {
			if u == "0" {
				t.Errorf("QEMU runs with uid 0 (Uid: %v) under a root voidbox", uids)
			}
		}
		if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err != nil || root != m.StateDir() {
			t.Errorf("QEMU's root is %q (%v), want its state dir %s", root, err, m.StateDir())
		}
	} else {
		t.Logf("voidbox is not root: QEMU keeps uid %v, no chroot", uids)
	}
	if _, err := os.Stat(filepath.Join(m.StateDir(), "boot.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the fw_cfg boot file is still on the host's disk after start-up: %v", err)
	}
	if console := m.ConsoleTail(64 << 10); !strings.Contains(console, "boot config from fw_cfg "+proto.FwCfgName) {
		t.Errorf("the agent did not take its boot config from fw_cfg; console:\n%s", console)
	}

	// A second session, with the right secret, while the first is open.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if conn, err := m.DialAgent(sctx); err == nil {
		if second, err := proto.Connect(sctx, conn, secret); err == nil {
			second.Close()
			t.Error("a second connection got a session while the first was open")
		}
		conn.Close()
	}
	if err := client.Ping(ctx); err != nil {
		t.Fatalf("the first session after the second connection: %v", err)
	}
	if err := client.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	waitPoweroff(t, m, "after the shutdown request")
}

// statusField returns the fields of a /proc/PID/status line ("Uid:\t0\t0\t0\t0").
func statusField(status, name string) []string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.Fields(v)
		}
	}
	return nil
}
