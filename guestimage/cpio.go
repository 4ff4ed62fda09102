package guestimage

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry is one member of an initramfs archive. Paths are absolute inside the
// archive ("/bin/busybox"); the writer stores them without the leading slash,
// as the kernel's initramfs unpacker and GNU cpio expect.
type Entry struct {
	Path string
	// Mode holds the permission bits and, through fs.ModeDir, fs.ModeSymlink or
	// fs.ModeDevice|fs.ModeCharDevice, the entry type.
	Mode fs.FileMode
	// Data is the file content, or the target of a symlink.
	Data []byte
	// Major and Minor are the device numbers of a character device node.
	Major, Minor uint32
}

// Archive is an in-memory tree of initramfs entries. It exists so that the
// written bytes depend only on the set of entries, not on the order they were
// added in: Write sorts them, numbers the inodes from 1 in that order, and
// stores every entry with uid/gid 0 and mtime 0.
type Archive struct {
	entries map[string]Entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// permBits keeps the permission bits plus sticky, setuid and setgid (Go
// represents those as high mode bits, not 01000/04000/02000).
const permBits = fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid

// AddDir adds a directory (and its missing parents) with the given
// permissions; use fs.ModeSticky|0o777 for a /tmp-like directory.
func (a *Archive) AddDir(p string, perm fs.FileMode) error {
	return a.add(Entry{Path: p, Mode: fs.ModeDir | perm&permBits})
}

// AddFile adds a regular file with the given content and permissions; missing
// parent directories are created with mode 0755.
func (a *Archive) AddFile(p string, data []byte, perm fs.FileMode) error {
	return a.add(Entry{Path: p, Mode: perm & permBits, Data: data})
}

// AddSymlink adds a symbolic link pointing at target.
func (a *Archive) AddSymlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %s: empty target", p)
	}
	return a.add(Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)})
}

// AddCharDevice adds a character device node, e.g. /dev/console (5, 1), which
// the kernel needs in the initramfs to give init a console.
func (a *Archive) AddCharDevice(p string, perm fs.FileMode, major, minor uint32) error {
	return a.add(Entry{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor})
}

// Len reports the number of entries, implicit parent directories included.
func (a *Archive) Len() int { return len(a.entries) }

func (a *Archive) add(e Entry) error {
	clean, err := cleanArchivePath(e.Path)
	if err != nil {
		return err
	}
	e.Path = clean
	if old, ok := a.entries[clean]; ok {
		// Re-adding a directory is harmless (parents are added implicitly);
		// anything else would silently drop content, so refuse it.
		if old.Mode.IsDir() && e.Mode.IsDir() {
			a.entries[clean] = e
			return nil
		}
		return fmt.Errorf("archive entry %s added twice", clean)
	}
	for dir := path.Dir(clean); dir != "/"; dir = path.Dir(dir) {
		if old, ok := a.entries[dir]; ok {
			if !old.Mode.IsDir() {
				return fmt.Errorf("archive entry %s: parent %s is not a directory", clean, dir)
			}
			continue
		}
		a.entries[dir] = Entry{Path: dir, Mode: fs.ModeDir | 0o755}
	}
	a.entries[clean] = e
	return nil
}

func cleanArchivePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("archive path %q must be absolute", p)
	}
	clean := path.Clean(p)
	if clean == "/" {
		return "", fmt.Errorf("archive path %q names the root, which is implicit", p)
	}
	if clean != p {
		return "", fmt.Errorf("archive path %q is not clean (want %q)", p, clean)
	}
	return clean, nil
}

// Write emits the archive in the "newc" cpio format (magic 070701), which is
// what the kernel's initramfs loader reads. The output is a pure function of
// the entries.
func (a *Archive) Write(w io.Writer) error {
	paths := make([]string, 0, len(a.entries))
	for p := range a.entries {
		paths = append(paths, p)
	}
	// Plain byte order puts every directory before its contents, because a
	// child path always extends its parent's path.
	sort.Strings(paths)
	cw := &countingWriter{w: w}
	for i, p := range paths {
		if err := writeEntry(cw, uint32(i+1), a.entries[p]); err != nil {
			return fmt.Errorf("write cpio entry %s: %w", p, err)
		}
	}
	trailer := Entry{Path: "TRAILER!!!"}
	if err := writeRecord(cw, 0, 0, 1, trailer, "TRAILER!!!"); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	return nil
}

func writeEntry(w *countingWriter, ino uint32, e Entry) error {
	var mode uint32
	nlink := uint32(1)
	switch {
	case e.Mode.IsDir():
		mode = 0o040000
		nlink = 2
	case e.Mode&fs.ModeSymlink != 0:
		mode = 0o120000
	case e.Mode&fs.ModeCharDevice != 0:
		mode = 0o020000
	case e.Mode.IsRegular():
		mode = 0o100000
	default:
		return fmt.Errorf("unsupported file type %v", e.Mode.Type())
	}
	mode |= uint32(e.Mode.Perm())
	if e.Mode&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if e.Mode&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	return writeRecord(w, ino, mode, nlink, e, strings.TrimPrefix(e.Path, "/"))
}

func writeRecord(w *countingWriter, ino, mode, nlink uint32, e Entry, name string) error {
	if uint64(len(e.Data)) > 0xffffffff {
		return fmt.Errorf("%d bytes exceed the newc size field", len(e.Data))
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.Major, e.Minor, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr); err != nil {
		return err
	}
	if _, err := io.WriteString(w, name+"\x00"); err != nil {
		return err
	}
	if err := w.pad4(); err != nil {
		return err
	}
	if _, err := w.Write(e.Data); err != nil {
		return err
	}
	return w.pad4()
}

// countingWriter tracks the offset so that names and data can be padded to
// the 4-byte boundaries newc requires.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) pad4() error {
	if r := c.n % 4; r != 0 {
		_, err := c.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
