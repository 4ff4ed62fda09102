package unpack

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveFlags confine every lookup to the root: no absolute symlinks, no
// ".." above the start, no /proc magic links, no crossing into other mounts.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// openBeneath opens p (relative to the root) with openat2; the kernel refuses
// any resolution that would leave the root.
func (u *unpacker) openBeneath(p string, flags int) (int, error) {
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveFlags}
	for range 16 {
		fd, err := unix.Openat2(u.root, p, how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // a concurrent rename elsewhere in the tree; the kernel asks to retry
		}
		if errors.Is(err, unix.ENOSYS) {
			return -1, fmt.Errorf("openat2 is not available (it needs Linux 5.6 or later): %w", err)
		}
		return fd, err
	}
	return -1, fmt.Errorf("openat2 %q: kept failing with EAGAIN", p)
}

// resolveErr turns a lookup failure of dir into a refusal when the kernel
// refused to leave the root, and into a wrapped error otherwise.
func (u *unpacker) resolveErr(entry, dir string, err error) error {
	switch {
	case errors.Is(err, unix.EXDEV):
		return u.refuse(entry, "path %q goes through a symlink (or mount) that leaves the root", dir)
	case errors.Is(err, unix.ELOOP):
		return u.refuse(entry, "path %q has too many levels of symlinks", dir)
	case errors.Is(err, unix.ENOTDIR):
		return u.refuse(entry, "a component of %q is not a directory", dir)
	}
	return u.fail(entry, "resolve "+dir, err)
}

// lookupDir opens the existing directory dir as an fd that can be listed;
// ENOENT and ENOTDIR come back unwrapped for callers for which absence is fine.
func (u *unpacker) lookupDir(entry, dir string) (int, error) {
	fd, err := u.openBeneath(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		return fd, nil
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return -1, err
	}
	return -1, u.resolveErr(entry, dir, err)
}

// lookupParent resolves the parent directory of p, which must exist, and
// returns an O_PATH fd of it and p's last component.
func (u *unpacker) lookupParent(entry, p string) (int, string, error) {
	dir, base := path.Dir(p), path.Base(p)
	fd, err := u.openBeneath(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, "", u.refuse(entry, "directory %q does not exist", dir)
		}
		return -1, "", u.resolveErr(entry, dir, err)
	}
	return fd, base, nil
}

// parent resolves the parent directory of p, creating missing directories
// (mode 0755, root-owned, as container runtimes do), and returns an O_PATH
// fd of it and p's last component.
func (u *unpacker) parent(entry, p string) (int, string, error) {
	dir, base := path.Dir(p), path.Base(p)
	fd, err := u.openBeneath(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		return fd, base, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, "", u.resolveErr(entry, dir, err)
	}
	// Walk down from the root, creating what is missing. Each step resolves
	// the whole prefix from the root again, so a symlink met on the way is
	// followed only while it stays beneath the root.
	comps := strings.Split(dir, "/")
	for i := range comps {
		prefix := strings.Join(comps[:i+1], "/")
		fd, err := u.openBeneath(prefix, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return -1, "", u.resolveErr(entry, prefix, err)
		}
		up := "."
		if i > 0 {
			up = strings.Join(comps[:i], "/")
		}
		pfd, err := u.openBeneath(up, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, "", u.resolveErr(entry, up, err)
		}
		err = u.implicitDir(pfd, comps[i])
		unix.Close(pfd)
		if err != nil {
			return -1, "", u.fail(entry, "create parent "+prefix, err)
		}
	}
	fd, err = u.openBeneath(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, "", u.resolveErr(entry, dir, err)
	}
	return fd, base, nil
}

// implicitDir creates a directory a layer uses without declaring it.
func (u *unpacker) implicitDir(pfd int, name string) error {
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return u.record(fd, "", Attr{Mode: unix.S_IFDIR | 0o755})
}

// readNames lists the directory open as dfd (not O_PATH).
func readNames(dfd int) ([]string, error) {
	dup, err := unix.FcntlInt(uintptr(dfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return names, nil
}

// removeAll removes name under dfd and, if it is a directory, everything in
// it, without following symlinks.
func removeAll(dfd int, name string) error {
	err := unix.Unlinkat(dfd, name, 0)
	if err == nil || !(errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM)) {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	names, err := readNames(fd)
	if err == nil {
		for _, n := range names {
			if err = removeAll(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
}
