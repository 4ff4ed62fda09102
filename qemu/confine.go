package qemu

import (
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
)

// VMMUser is the dedicated system user QEMU runs as when voidbox runs as root
// and the user exists (useradd --system --no-create-home --shell
// /usr/sbin/nologin voidbox-vmm); otherwise QEMU runs as "nobody".
const VMMUser = "voidbox-vmm"

// fallbackVMMUser is used when VMMUser does not exist.
const fallbackVMMUser = "nobody"

// dropUser picks the user QEMU drops to: none when voidbox is not root (QEMU
// then runs as voidbox's own unprivileged user, and chroot needs root), else
// VMMUser if it exists, else nobody. A root voidbox never runs QEMU as root.
//
// What QEMU opens is opened before it drops privileges: QEMU 7.2 reads the
// kernel, initramfs and fw_cfg files, creates or connects every chardev
// socket (QMP, agent, console, vhost-user) and opens /dev/kvm and
// /dev/vhost-vsock during start-up, then chroots into the state dir and
// switches user as the last step before running the guest (os_setup_post).
// After that it needs no path at all: the state dir stays root's, mode 0700,
// and the dropped user can read nothing in it, not even the boot config.
func dropUser(euid int, lookup func(string) (*user.User, error)) (string, error) {
	if euid != 0 {
		return "", nil
	}
	for _, name := range []string{VMMUser, fallbackVMMUser} {
		u, err := lookup(name)
		if err != nil {
			continue
		}
		if u.Uid == "0" || u.Gid == "0" {
			return "", fmt.Errorf("qemu: user %s has uid %s gid %s; QEMU must drop to an unprivileged user", name, u.Uid, u.Gid)
		}
		return name, nil
	}
	return "", fmt.Errorf("qemu: voidbox runs as root, but neither user %s nor %s exists to run QEMU as; create one: useradd --system --no-create-home --shell /usr/sbin/nologin %s", VMMUser, fallbackVMMUser, VMMUser)
}

// RunAsUser is the user QEMU runs as under this voidbox process, for `voidbox
// doctor`: "" when voidbox is not root (QEMU keeps voidbox's own user), else
// VMMUser or nobody; an error when voidbox is root and neither exists (boots
// then fail with the same error).
func RunAsUser() (string, error) { return dropUser(os.Geteuid(), user.Lookup) }

// qemuRelease is QEMU's major.minor version, which decides how confinement is
// spelt on its command line.
type qemuRelease struct{ major, minor int }

var versionRE = regexp.MustCompile(`version (\d+)\.(\d+)`)

// parseRelease reads "QEMU emulator version 7.2.22 (Debian ...)".
func parseRelease(versionLine string) (qemuRelease, error) {
	m := versionRE.FindStringSubmatch(versionLine)
	if m == nil {
		return qemuRelease{}, fmt.Errorf("qemu: cannot read a version from %q", versionLine)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return qemuRelease{major, minor}, nil
}

func (r qemuRelease) atLeast(major, minor int) bool {
	return r.major > major || r.major == major && r.minor >= minor
}

// confineArgs chroots QEMU into dir and drops it to user: -chroot and -runas
// before QEMU 8.1, -run-with chroot= from 8.1 (when -chroot was deprecated),
// -run-with user= from 9.1 (when -runas was).
func confineArgs(r qemuRelease, dir, user string) []string {
	switch {
	case r.atLeast(9, 1):
		return []string{"-run-with", "chroot=" + optValue(dir) + ",user=" + optValue(user)}
	case r.atLeast(8, 1):
		return []string{"-run-with", "chroot=" + optValue(dir), "-runas", user}
	default:
		return []string{"-chroot", dir, "-runas", user}
	}
}

// sandboxArg is QEMU's seccomp policy: no exec, no obsolete calls, no resource
// control, and no set*id calls unless QEMU must still drop privileges itself.
// QEMU installs the filter before it switches user, so elevateprivileges=deny
// kills a -runas QEMU with SIGSYS ("Bad system call") at setgid. Allowing the
// calls then grants nothing: the switch from root sets real, effective and
// saved ids and leaves no capability (the filter also sets no_new_privs), so
// QEMU cannot get root back with them.
func sandboxArg(dropsPrivileges bool) string {
	elevate := "deny"
	if dropsPrivileges {
		elevate = "allow"
	}
	return "on,obsolete=deny,elevateprivileges=" + elevate + ",spawn=deny,resourcecontrol=deny"
}

// optValue escapes a value for QEMU's comma-separated option syntax, where
// ",," stands for a literal comma: a path with a comma (a TMPDIR like
// /tmp/a,b) would otherwise end the value and start a bogus option.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// bootConfigFile is the state-dir file QEMU reads the BootConfig from
// (-fw_cfg), mode 0600. It is removed once QEMU has read it.
const bootConfigFile = "boot.json"

// writeBootConfig writes the fw_cfg file; the state dir is the 0700 one
// vmstate.NewDir made.
func writeBootConfig(path string, js []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write boot config for fw_cfg: %w", err)
	}
	_, err = f.Write(js)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write boot config for fw_cfg: %w", err)
	}
	return nil
}
