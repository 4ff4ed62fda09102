package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// startVirtiofsd serves one share on a vhost-user socket and returns once
// the socket exists (QEMU connects to it at start-up and fails otherwise).
// Debian's C virtiofsd has no read-only option: a ReadOnly share's daemon runs
// in a mount namespace where the directory is bound read-only
// (vmstate.ReadOnlyExport), and the guest agent mounts it read-only as well.
func startVirtiofsd(ctx context.Context, bin, sock string, s runtime.Share) (*exec.Cmd, <-chan error, error) {
	st, err := os.Stat(s.HostPath)
	if err != nil {
		return nil, nil, fmt.Errorf("share %s: host path: %w", s.Tag, err)
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("share %s: host path %s is not a directory", s.Tag, s.HostPath)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, nil, fmt.Errorf("share %s: virtiofsd %s not found (apt-get install qemu-system-common): %w", s.Tag, bin, err)
	}
	if strings.Contains(s.HostPath, ",") {
		return nil, nil, fmt.Errorf("share %s: host path %q must not contain ',' (virtiofsd -o syntax)", s.Tag, s.HostPath)
	}
	stderr := &tailBuffer{max: 4 << 10}
	prog, args := bin, []string{"--socket-path=" + sock, "-o", "source=" + s.HostPath, "-o", "cache=auto"}
	if s.ReadOnly {
		if prog, args, err = vmstate.ReadOnlyExport(prog, args, s.HostPath); err != nil {
			return nil, nil, fmt.Errorf("share %s: %w", s.Tag, err)
		}
	}
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	wait, err := vmstate.StartPinned(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("share %s: start virtiofsd: %w", s.Tag, err)
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			return cmd, wait, nil
		}
		select {
		case err := <-wait:
			return nil, nil, fmt.Errorf("share %s: virtiofsd exited (%v): %s", s.Tag, err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
		case <-deadline.C:
		case <-tick.C:
			continue
		}
		_ = cmd.Process.Kill()
		<-wait
		return nil, nil, fmt.Errorf("share %s: virtiofsd did not create %s in time: %s", s.Tag, sock, strings.TrimSpace(stderr.String()))
	}
}
