package chv

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

func TestVirtiofsdArgs(t *testing.T) {
	s := fsShare{Share: runtime.Share{Tag: "t", HostPath: "/data", ReadOnly: true}, Socket: "/s/fs0.sock"}
	prog, args, err := virtiofsdCommand("/v", fsdRust, s)
	if err != nil || prog != "/v" || !slices.Contains(args, "--readonly") || !slices.Contains(args, "--shared-dir=/data") || !slices.Contains(args, "--socket-path=/s/fs0.sock") {
		t.Errorf("rust: %s %q, %v", prog, args, err)
	}
	// The C daemon has no read-only export: as root it runs where the directory is
	// bound read-only; otherwise the share is refused.
	prog, args, err = virtiofsdCommand("/v", fsdC, s)
	if os.Geteuid() == 0 {
		if err != nil || filepath.Base(prog) != "unshare" || !slices.Contains(args, "/data") || !slices.Contains(args, "source=/data") {
			t.Errorf("C daemon with a read-only share: %s %q, %v", prog, args, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "no read-only export") {
		t.Errorf("C daemon with a read-only share, not root: %v", err)
	}
	s.ReadOnly = false
	prog, args, err = virtiofsdCommand("/v", fsdC, s)
	if err != nil || prog != "/v" || strings.Join(args, " ") != "--socket-path=/s/fs0.sock -o source=/data -o cache=auto" {
		t.Errorf("C args %s %q, %v", prog, args, err)
	}
}

// TestBootWithShare runs a real virtiofsd next to the fake VMM: it must be up
// (socket present) while the VM runs and gone, socket and all, after.
func TestBootWithShare(t *testing.T) {
	bin, err := findVirtiofsd("")
	if err != nil {
		t.Skipf("no virtiofsd on this machine: %v", err)
	}
	d := fakeDriver(t, "normal")
	cfg := shareConfig(t)
	m, err := d.boot(context.Background(), cfg)
	if err != nil {
		t.Fatalf("boot with %s: %v", bin, err)
	}
	t.Cleanup(func() { m.Kill() })
	if len(m.fsd) != 1 || m.fsd[0].p.exited() {
		t.Fatalf("virtiofsd not running")
	}
	fsdPid := m.fsd[0].p.cmd.Process.Pid
	var info struct{ Config vmConfig }
	if err := m.api.call(context.Background(), http.MethodGet, "vm.info", nil, &info); err != nil {
		t.Fatal(err)
	}
	if !info.Config.Memory.Shared || len(info.Config.FS) != 1 || info.Config.FS[0].Socket != filepath.Join(cfg.StateDir, "fs0.sock") {
		t.Errorf("config %+v", info.Config)
	}
	if fi, err := os.Stat(info.Config.FS[0].Socket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("virtiofsd socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m)
	if err := syscall.Kill(fsdPid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("virtiofsd pid %d outlived the VM", fsdPid)
	}
	if _, err := os.Stat(info.Config.FS[0].Socket); err == nil {
		t.Error("virtiofsd socket left behind")
	}
}

func TestShareMustBeADirectory(t *testing.T) {
	if _, err := findVirtiofsd(""); err != nil {
		t.Skipf("no virtiofsd on this machine: %v", err)
	}
	cfg := testConfig(t)
	file := filepath.Join(cfg.StateDir, "f")
	os.WriteFile(file, nil, 0o600)
	cfg.Shares = []runtime.Share{{Tag: "f", HostPath: file}}
	_, err := fakeDriver(t, "normal").Boot(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("err %v", err)
	}
	checkNoChildren(t)
}
