package unpack

import (
	"errors"
	"fmt"
	"path"

	"golang.org/x/sys/unix"
)

// Whiteouts, as the OCI image spec defines them: ".wh.NAME" hides NAME of
// lower layers; ".wh..wh..opq" hides everything lower layers put in its
// directory. Neither hides what the same layer writes.

// markSeen records p and its ancestors as written by the current layer, so an
// opaque marker later in the same layer keeps them.
func (u *unpacker) markSeen(p string) {
	for p != "." && p != "/" && !u.seen[p] {
		u.seen[p] = true
		p = path.Dir(p)
	}
}

// whiteout removes dir/name (from lower layers) for a ".wh.name" entry.
func (u *unpacker) whiteout(entry, dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return u.refuse(entry, "whiteout of %q", name)
	}
	target := path.Join(dir, name)
	u.markSeen(dir)
	if u.seen[target] {
		return nil // the spec: a whiteout hides only lower layers' files
	}
	return u.inDir(entry, dir, "whiteout", func(fd int) error { return u.clear(fd, name) })
}

// inDir runs fn on the directory dir if it exists (there is nothing to hide
// in a directory that does not).
func (u *unpacker) inDir(entry, dir, op string, fn func(fd int) error) error {
	fd, err := u.lookupDir(entry, dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := fn(fd); err != nil {
		return u.fail(entry, op, err)
	}
	return nil
}

// opaque empties dir of everything lower layers put there: entries written
// by the current layer (before or after the marker) stay.
func (u *unpacker) opaque(entry, dir string) error {
	u.markSeen(dir)
	return u.inDir(entry, dir, "opaque directory", func(fd int) error { return u.pruneUnseen(fd, dir) })
}

func (u *unpacker) pruneUnseen(dfd int, dir string) error {
	names, err := readNames(dfd)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if !u.seen[p] {
			if err := removeAll(dfd, n); err != nil {
				return err
			}
			continue
		}
		cfd, err := unix.Openat(dfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = u.pruneUnseen(cfd, p)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
