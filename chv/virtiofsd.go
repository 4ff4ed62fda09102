package chv

import (
	"context"
	"fmt"
	"github.com/voidbox/voidbox/internal/vmstate"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Places virtiofsd is installed when it is not on PATH: the Rust daemon in
// distributions that ship it, and QEMU's C daemon in Debian's qemu-system-common.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// findVirtiofsd resolves the virtiofsd binary: the configured one, else PATH,
// else the usual install locations.
func findVirtiofsd(configured string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("chv: virtiofsd %q: %w", configured, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p, nil
	}
	for _, p := range virtiofsdPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("chv: virtiofsd not found on PATH nor in %s; install the virtiofsd package (or qemu-system-common) or set Options.Virtiofsd", strings.Join(virtiofsdPaths, ", "))
}

// virtiofsd comes in two flavours with different flags: the Rust daemon
// (--shared-dir, --readonly) and QEMU's older C daemon (-o source=).
type fsdFlavor int

const (
	fsdRust fsdFlavor = iota
	fsdC
)

var flavorCache sync.Map // binary path -> fsdFlavor

func virtiofsdFlavor(bin string) (fsdFlavor, error) {
	if f, ok := flavorCache.Load(bin); ok {
		return f.(fsdFlavor), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	var f fsdFlavor
	switch help := string(out); {
	case strings.Contains(help, "--shared-dir"):
		f = fsdRust
	case strings.Contains(help, "source=PATH"):
		f = fsdC
	default:
		return 0, fmt.Errorf("chv: %s --help names neither --shared-dir nor -o source=; is it virtiofsd?", bin)
	}
	flavorCache.Store(bin, f)
	return f, nil
}

// virtiofsdCommand is the program and arguments that serve share s with the
// daemon bin of flavour f.
func virtiofsdCommand(bin string, f fsdFlavor, s fsShare) (string, []string, error) {
	switch f {
	case fsdRust:
		args := []string{"--socket-path=" + s.Socket, "--shared-dir=" + s.HostPath, "--cache=auto"}
		if s.ReadOnly {
			args = append(args, "--readonly")
		}
		if os.Geteuid() != 0 {
			// Its namespace sandbox needs privileges an ordinary user lacks.
			args = append(args, "--sandbox=none")
		}
		return bin, args, nil
	default:
		args := []string{"--socket-path=" + s.Socket, "-o", "source=" + s.HostPath, "-o", "cache=auto"}
		if !s.ReadOnly {
			return bin, args, nil
		}
		// The C daemon has no read-only export: it runs where the directory is
		// bound read-only instead.
		prog, args, err := vmstate.ReadOnlyExport(bin, args, s.HostPath)
		if err != nil {
			return "", nil, fmt.Errorf("share %q is read-only and this virtiofsd (QEMU's C daemon) has no read-only export: %w", s.Tag, err)
		}
		return prog, args, nil
	}
}

// virtiofsd is one running daemon serving one share.
type virtiofsd struct {
	p      *proc
	socket string
}

// startVirtiofsd starts a daemon for the share and waits until its socket
// exists, so that Cloud Hypervisor finds it at vm.boot.
func startVirtiofsd(ctx context.Context, bin string, s fsShare, logPath string) (*virtiofsd, error) {
	fi, err := os.Stat(s.HostPath)
	if err != nil {
		return nil, fmt.Errorf("share %q: %w", s.Tag, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("share %q: %s is not a directory", s.Tag, s.HostPath)
	}
	f, err := virtiofsdFlavor(bin)
	if err != nil {
		return nil, err
	}
	prog, args, err := virtiofsdCommand(bin, f, s)
	if err != nil {
		return nil, err
	}
	os.Remove(s.Socket)
	p, err := startProc("virtiofsd", prog, args, logPath)
	if err != nil {
		return nil, err
	}
	v := &virtiofsd{p: p, socket: s.Socket}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(s.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return v, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("virtiofsd for share %q exited (%s) before creating %s%s",
				s.Tag, describeExit(p.waitErr), filepath.Base(s.Socket), quoteTail("virtiofsd log", logPath, 2048))
		case <-ctx.Done():
			v.stop()
			return nil, fmt.Errorf("virtiofsd for share %q did not create its socket: %w", s.Tag, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop ends the daemon (it normally exits by itself when the VMM hangs up)
// and removes its socket.
func (v *virtiofsd) stop() {
	v.p.stop(2 * time.Second)
	os.Remove(v.socket)
}
