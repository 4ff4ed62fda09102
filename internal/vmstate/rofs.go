package vmstate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// roScript runs as `sh -c roScript sh DIR PROG ARGS...` inside a private mount
// namespace: it binds DIR read-only over itself, then becomes PROG (same pid, so
// the caller's process pinning holds).
const roScript = `mount -o bind,ro -- "$1" "$1" || exit 125; shift; exec "$@"`

// ReadOnlyExport returns the command line that runs prog with args where dir is
// read-only: in a mount namespace of its own (util-linux unshare) in which dir is
// bind-mounted read-only over itself. It is how a read-only share is enforced on the
// host for QEMU's C virtiofsd, which has no read-only export of its own: a guest
// that remounts its side writable still cannot change the host's files. It needs
// root (CAP_SYS_ADMIN), as that virtiofsd does.
func ReadOnlyExport(prog string, args []string, dir string) (string, []string, error) {
	if os.Geteuid() != 0 {
		return "", nil, errors.New("exporting a directory read-only needs root (a private mount namespace with a read-only bind mount), or the Rust virtiofsd (--readonly)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return "", nil, fmt.Errorf("export %s read-only: %w (install util-linux)", dir, err)
	}
	wrapped := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", roScript, "sh", dir, prog}, args...)
	return unshare, wrapped, nil
}
