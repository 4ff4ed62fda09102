// Package unpack applies OCI image layers (tar streams, lowest first) to a
// directory without ever writing outside it. Every path is resolved with
// openat2(RESOLVE_BENEATH) from a descriptor of the root and the last component
// is created with *at calls that never follow symlinks, so the kernel, not a
// string check, keeps a malicious layer inside the root. Entries that try to
// leave it (absolute names, "..", hardlinks to outside, relative symlinks that
// climb above the root, paths through a symlink that leaves it) are refused with
// the layer digest and the entry name; device nodes and FIFOs are skipped; the
// total file size and the entry count are bounded. Whiteouts (.wh.NAME) and
// opaque directories (.wh..wh..opq) follow the OCI image spec.
//
// Symlinks: a relative symlink that stays inside the root is followed when a
// later entry's path goes through it (Debian's merged /usr has lib -> usr/lib,
// and an upper layer may write lib/x), as Docker does. An absolute symlink is
// kept as an entry, since inside the guest it resolves from the image's root
// (Debian's /lib64/ld-linux-x86-64.so.2 is one), but nothing on the host ever
// follows it: openat2 refuses it, so an entry written through it is refused.
// Needs Linux 5.6 or later (openat2).
//
// Ownership and modes: the tree on disk keeps the image's modes, and the image's
// uid/gid when the caller may chown (root). Otherwise files stay owned by the
// caller and keep owner read (and, for directories, owner rwx) so that a later
// mkfs can read them; Result.Attrs records, per inode, what the entry should be,
// for the disk builder to apply.
package unpack

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Default limits, chosen to fit real distribution images (a Debian image with
// python3 is about 150 MB and 8,000 entries) with a wide margin.
const (
	DefaultMaxBytes   int64 = 16 << 30
	DefaultMaxEntries       = 1 << 20
)

// maxTrailing bounds what may follow the end of a tar archive in a layer
// stream: it is read only to check the layer's diff ID, and a legitimate
// writer pads with at most a few KiB of zeros.
const maxTrailing = 1 << 20

// ErrRefused is wrapped by every refusal of an entry, so callers can tell a
// malicious or unsupported layer from an I/O error.
var ErrRefused = errors.New("refused")

// Refusal is the error for an entry that is not applied.
type Refusal struct {
	Layer  string // the layer's digest
	Entry  string // the entry name as written in the tar
	Reason string
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("layer %s: entry %q refused: %s", r.Layer, r.Entry, r.Reason)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (r *Refusal) Unwrap() error { return ErrRefused }

// Layer is one uncompressed layer tar stream.
type Layer struct {
	Digest string // names the layer in errors (the blob's digest)
	// DiffID, when set ("sha256:..."), is checked against the SHA-256 of the
	// uncompressed stream.
	DiffID string
	Open   func() (io.ReadCloser, error)
}

// Options bound and shape an unpack.
type Options struct {
	MaxBytes   int64 // total regular file bytes over all layers; 0 means DefaultMaxBytes
	MaxEntries int   // total tar entries over all layers; 0 means DefaultMaxEntries
	// Chown sets each entry's uid/gid from the tar header and exact modes
	// (needs CAP_CHOWN, i.e. root). Without it, files are owned by the caller.
	Chown bool
}

// Attr is what an entry should be in the image: owner and full mode
// (file type bits included, as in st_mode).
type Attr struct {
	UID, GID int
	Mode     uint32
}

// Result describes an applied image.
type Result struct {
	// Attrs maps an inode number in the unpacked tree to the owner and mode
	// the image gives it. Every entry that exists at the end has one.
	Attrs   map[uint64]Attr
	Ignored []string // "layer: entry (kind)" of device nodes and FIFOs skipped
	Entries int      // tar entries read over all layers
	Bytes   int64    // regular file bytes written
}

// Apply applies layers in order to the directory dir, which should be empty.
func Apply(ctx context.Context, dir string, layers []Layer, opts Options) (*Result, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("unpack: open root %s: %w", dir, err)
	}
	defer unix.Close(root)
	u := &unpacker{root: root, opts: opts, res: &Result{Attrs: map[uint64]Attr{}}, dirTimes: map[string]time.Time{}}
	if err := u.recordRoot(); err != nil {
		return nil, err
	}
	for _, l := range layers {
		if err := u.applyLayer(ctx, l); err != nil {
			return nil, err
		}
	}
	if err := u.finishDirs(); err != nil {
		return nil, err
	}
	return u.res, nil
}

type unpacker struct {
	root     int
	opts     Options
	res      *Result
	layer    string
	seen     map[string]bool      // paths (and their ancestors) written by the current layer
	dirTimes map[string]time.Time // directory mtimes, set last (creating children changes them)
}

func (u *unpacker) refuse(entry, format string, args ...any) error {
	return &Refusal{Layer: u.layer, Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

func (u *unpacker) applyLayer(ctx context.Context, l Layer) error {
	u.layer = l.Digest
	u.seen = map[string]bool{}
	rc, err := l.Open()
	if err != nil {
		return fmt.Errorf("unpack: layer %s: open: %w", l.Digest, err)
	}
	defer rc.Close()
	h := sha256.New()
	stream := io.TeeReader(rc, h)
	tr := tar.NewReader(stream)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unpack: layer %s: %w", l.Digest, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack: layer %s: reading tar after %d entries: %w", l.Digest, u.res.Entries, err)
		}
		u.res.Entries++
		if u.res.Entries > u.opts.MaxEntries {
			return u.refuse(hdr.Name, "more than %d entries in the image (the entry limit)", u.opts.MaxEntries)
		}
		if err := u.applyEntry(hdr, tr); err != nil {
			return err
		}
	}
	if l.DiffID == "" {
		return nil
	}
	n, err := io.Copy(io.Discard, io.LimitReader(stream, maxTrailing+1))
	if err != nil {
		return fmt.Errorf("unpack: layer %s: reading the end of the stream: %w", l.Digest, err)
	}
	if n > maxTrailing {
		return fmt.Errorf("unpack: layer %s: more than %d bytes after the end of the tar archive", l.Digest, maxTrailing)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID {
		return fmt.Errorf("unpack: layer %s: uncompressed content is %s, the image config says %s", l.Digest, got, l.DiffID)
	}
	return nil
}

// cleanName validates a tar entry name and returns it relative to the root
// ("." for the root itself).
func cleanName(name string) (string, string) {
	if name == "" {
		return "", "empty name"
	}
	if strings.HasPrefix(name, "/") {
		return "", "absolute path"
	}
	if strings.ContainsRune(name, 0) {
		return "", "NUL byte in name"
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", `".." in path`
		}
	}
	return path.Clean(name), ""
}

func (u *unpacker) applyEntry(hdr *tar.Header, r io.Reader) error {
	p, bad := cleanName(hdr.Name)
	if bad != "" {
		return u.refuse(hdr.Name, "%s", bad)
	}
	dir, base := path.Split(p)
	dir = path.Clean(dir)
	switch {
	case base == ".wh..wh..opq":
		return u.opaque(hdr.Name, dir)
	case strings.HasPrefix(base, ".wh..wh."):
		return nil // aufs metadata (.wh..wh.plnk and the like): not part of the image
	case strings.HasPrefix(base, ".wh."):
		return u.whiteout(hdr.Name, dir, strings.TrimPrefix(base, ".wh."))
	}
	if p == "." && hdr.Typeflag != tar.TypeDir {
		return u.refuse(hdr.Name, "the root can only be a directory, got entry type %q", hdr.Typeflag)
	}
	u.markSeen(p)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(hdr, p)
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return u.writeFile(hdr, p, r)
	case tar.TypeSymlink:
		return u.symlink(hdr, p)
	case tar.TypeLink:
		return u.hardlink(hdr, p)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]string{tar.TypeChar: "character device", tar.TypeBlock: "block device", tar.TypeFifo: "FIFO"}[hdr.Typeflag]
		u.res.Ignored = append(u.res.Ignored, fmt.Sprintf("%s: %s (%s)", u.layer, hdr.Name, kind))
		return nil
	default:
		return u.refuse(hdr.Name, "unsupported tar entry type %q", hdr.Typeflag)
	}
}

// mode returns the st_mode an entry should have: type bits plus the header's
// permission, setuid, setgid and sticky bits.
func mode(hdr *tar.Header, typ uint32) uint32 {
	return typ | uint32(hdr.Mode)&07777
}

func (u *unpacker) mkdir(hdr *tar.Header, p string) error {
	want := mode(hdr, unix.S_IFDIR)
	if p == "." {
		return u.setRoot(hdr, want)
	}
	pfd, base, err := u.parent(hdr.Name, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		// An existing directory merges with the new entry's metadata.
	case err == nil:
		if err := removeAll(pfd, base); err != nil {
			return u.fail(hdr.Name, "replace with a directory", err)
		}
		fallthrough
	case errors.Is(err, unix.ENOENT):
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return u.fail(hdr.Name, "mkdir", err)
		}
	default:
		return u.fail(hdr.Name, "stat", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return u.fail(hdr.Name, "open directory", err)
	}
	defer unix.Close(fd)
	if err := u.setAttrs(fd, hdr, want, 0o700); err != nil {
		return u.fail(hdr.Name, "set owner and mode", err)
	}
	u.dirTimes[p] = hdr.ModTime
	return nil
}

// setRoot applies a "./" entry to the root directory itself.
func (u *unpacker) setRoot(hdr *tar.Header, want uint32) error {
	fd, err := unix.Openat(u.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return u.fail(hdr.Name, "open root", err)
	}
	defer unix.Close(fd)
	if err := u.setAttrs(fd, hdr, want, 0o700); err != nil {
		return u.fail(hdr.Name, "set owner and mode", err)
	}
	u.dirTimes["."] = hdr.ModTime
	return nil
}

// setAttrs records the entry's owner and mode and applies what the caller
// may: with Chown, the owner and exact mode (chown first: it clears setuid);
// without, the mode plus keep (the owner bits mkfs needs to read the tree).
func (u *unpacker) setAttrs(fd int, hdr *tar.Header, want, keep uint32) error {
	if u.opts.Chown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
		keep = 0
	}
	if err := unix.Fchmod(fd, want&07777|keep); err != nil {
		return fmt.Errorf("chmod %o: %w", want&07777|keep, err)
	}
	return u.record(fd, "", Attr{UID: hdr.Uid, GID: hdr.Gid, Mode: want})
}

// record stores a for the inode of fd (or of name under fd, not followed).
func (u *unpacker) record(fd int, name string, a Attr) error {
	var st unix.Stat_t
	var err error
	if name == "" {
		err = unix.Fstat(fd, &st)
	} else {
		err = unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	u.res.Attrs[st.Ino] = a
	return nil
}

func (u *unpacker) recordRoot() error {
	if err := u.record(u.root, "", Attr{Mode: unix.S_IFDIR | 0o755}); err != nil {
		return fmt.Errorf("unpack: root: %w", err)
	}
	return nil
}

// fail wraps an I/O error for an entry.
func (u *unpacker) fail(entry, op string, err error) error {
	var r *Refusal
	if errors.As(err, &r) {
		return err
	}
	return fmt.Errorf("unpack: layer %s: entry %q: %s: %w", u.layer, entry, op, err)
}

func (u *unpacker) writeFile(hdr *tar.Header, p string, r io.Reader) error {
	if hdr.Size > u.opts.MaxBytes-u.res.Bytes {
		return u.refuse(hdr.Name, "%d bytes would exceed the image size limit of %d bytes (%d already written)",
			hdr.Size, u.opts.MaxBytes, u.res.Bytes)
	}
	pfd, base, err := u.emptySlot(hdr.Name, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return u.fail(hdr.Name, "create", err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
	u.res.Bytes += n
	if err != nil {
		return u.fail(hdr.Name, "write", err)
	}
	if n != hdr.Size {
		return u.fail(hdr.Name, "write", fmt.Errorf("tar entry holds %d of its %d bytes", n, hdr.Size))
	}
	if err := u.setAttrs(fd, hdr, mode(hdr, unix.S_IFREG), 0o400); err != nil {
		return u.fail(hdr.Name, "set owner and mode", err)
	}
	if err := unix.UtimesNanoAt(pfd, base, times(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return u.fail(hdr.Name, "set mtime", err)
	}
	return nil
}

func (u *unpacker) symlink(hdr *tar.Header, p string) error {
	t := hdr.Linkname
	if t == "" {
		return u.refuse(hdr.Name, "symlink with an empty target")
	}
	if strings.ContainsRune(t, 0) {
		return u.refuse(hdr.Name, "NUL byte in symlink target")
	}
	// An absolute target is resolved from the image's root inside the guest;
	// on the host nothing follows it (RESOLVE_BENEATH refuses absolute links).
	// A relative one must not climb above the root from where the link is.
	if !strings.HasPrefix(t, "/") && climbsOut(path.Dir(p), t) {
		return u.refuse(hdr.Name, "symlink target %q points outside the root", t)
	}
	pfd, base, err := u.emptySlot(hdr.Name, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(t, pfd, base); err != nil {
		return u.fail(hdr.Name, "symlink", err)
	}
	if u.opts.Chown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return u.fail(hdr.Name, "chown", err)
		}
	}
	if err := unix.UtimesNanoAt(pfd, base, times(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return u.fail(hdr.Name, "set mtime", err)
	}
	if err := u.record(pfd, base, Attr{UID: hdr.Uid, GID: hdr.Gid, Mode: unix.S_IFLNK | 0o777}); err != nil {
		return u.fail(hdr.Name, "record", err)
	}
	return nil
}

// climbsOut reports whether the relative symlink target t, read from the
// directory dir (relative to the root), goes above the root.
func climbsOut(dir, t string) bool {
	depth := 0
	if dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for _, c := range strings.Split(t, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func (u *unpacker) hardlink(hdr *tar.Header, p string) error {
	t, bad := cleanName(hdr.Linkname)
	if bad != "" {
		return u.refuse(hdr.Name, "hardlink target %q: %s", hdr.Linkname, bad)
	}
	if t == "." {
		return u.refuse(hdr.Name, "hardlink to the root directory")
	}
	tfd, tbase, err := u.lookupParent(hdr.Name, t)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return u.refuse(hdr.Name, "hardlink target %q does not exist in the image", hdr.Linkname)
		}
		return u.fail(hdr.Name, "stat hardlink target", err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return u.refuse(hdr.Name, "hardlink target %q is a directory", hdr.Linkname)
	}
	pfd, base, err := u.parent(hdr.Name, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Ino == tst.Ino && st.Dev == tst.Dev {
		return nil // already that inode
	}
	if err := u.clear(pfd, base); err != nil {
		return u.fail(hdr.Name, "replace", err)
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return u.fail(hdr.Name, "link", err)
	}
	return nil
}

// emptySlot resolves p's parent (creating it) and removes whatever is at p,
// so the new entry replaces it instead of writing through it.
func (u *unpacker) emptySlot(entry, p string) (int, string, error) {
	pfd, base, err := u.parent(entry, p)
	if err != nil {
		return -1, "", err
	}
	if err := u.clear(pfd, base); err != nil {
		unix.Close(pfd)
		return -1, "", u.fail(entry, "replace", err)
	}
	return pfd, base, nil
}

// times is atime and mtime for utimensat.
func times(t time.Time) []unix.Timespec {
	ts := unix.NsecToTimespec(t.UnixNano())
	return []unix.Timespec{ts, ts}
}

// clear removes whatever is at base under pfd, so the new entry replaces it
// instead of writing through it.
func (u *unpacker) clear(pfd int, base string) error {
	err := removeAll(pfd, base)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// finishDirs sets directory mtimes and, with Chown, exact modes (directories
// were kept writable while their children were created).
func (u *unpacker) finishDirs() error {
	for p, mt := range u.dirTimes {
		fd, err := u.openBeneath(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue // removed or replaced by a later layer
		}
		err = u.setDirTime(p, mt)
		var st unix.Stat_t
		if err == nil && u.opts.Chown {
			if err = unix.Fstat(fd, &st); err == nil {
				if a, ok := u.res.Attrs[st.Ino]; ok {
					err = unix.Fchmod(fd, a.Mode&07777)
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("unpack: directory %q: finishing: %w", p, err)
		}
	}
	return nil
}

// setDirTime sets the mtime of directory p through its parent (utimensat on
// a directory fd itself needs AT_EMPTY_PATH, which older kernels lack).
func (u *unpacker) setDirTime(p string, mt time.Time) error {
	pfd, err := u.openBeneath(path.Dir(p), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return unix.UtimesNanoAt(pfd, path.Base(p), times(mt), unix.AT_SYMLINK_NOFOLLOW)
}
