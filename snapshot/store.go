package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// metaFile is the metadata file in a snapshot directory.
const metaFile = "meta.json"

// maxMeta bounds how much of a meta.json Load reads.
const maxMeta = 64 << 10

// ErrNotFound is returned by Load when the store has no snapshot for the key.
var ErrNotFound = errors.New("no snapshot for this key")

// ErrCorrupt is wrapped by Load's error for a snapshot that fails its checks (a
// missing, resized or altered file, unreadable metadata, another key): it must not be
// restored. The caller cold-boots and may rebuild it.
var ErrCorrupt = errors.New("snapshot is corrupt")

// Meta is a snapshot's meta.json.
type Meta struct {
	Format int    `json:"format"`
	ID     string `json:"id"`
	Key    Key    `json:"key"`
	// Secret is the agent secret of the saved guest: the host authenticates the re-key
	// that replaces it (and the guest's entropy and clock) in every restored VM.
	Secret  string    `json:"secret"`
	Created time.Time `json:"created"`
	// BuildMS is how long the build took (boot to the idle point, then save).
	BuildMS int64  `json:"build_ms"`
	Files   []File `json:"files"`
}

// File is one file the VMM saved, with its checksum.
type File struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
}

// Size is the snapshot's size on disk in bytes as its files state it (a sparse memory
// file uses less).
func (m Meta) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Snapshot is a verified snapshot: Dir holds the VMM's files.
type Snapshot struct {
	Dir  string
	Meta Meta
}

// Store is a directory of snapshots.
type Store struct {
	dir string
}

// DefaultDir is ~/.voidbox/snapshots.
func DefaultDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("snapshot store: %w", err)
	}
	return filepath.Join(home, ".voidbox", "snapshots"), nil
}

// Open returns the store in dir, creating it (mode 0700) when missing. An existing
// directory that others can read is refused: it holds agent secrets and guest memory.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot store %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store %s: %w", dir, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("snapshot store %s has mode %04o; it must be 0700 (chmod 700 %s): it holds agent secrets and guest memory", dir, st.Mode().Perm(), dir)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(id string) string { return filepath.Join(s.dir, id) }

// Load returns the snapshot for k after verifying it: ErrNotFound when there is none,
// an error wrapping ErrCorrupt when it fails a check.
func (s *Store) Load(k Key) (*Snapshot, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	id := k.ID()
	dir := s.path(id)
	m, err := readMeta(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(dir, metaFile), err)
	}
	if m.Format != FormatVersion || m.ID != id || m.Key != k {
		return nil, fmt.Errorf("%w: %s is for format %d, id %s, key %+v; want format %d, id %s, key %+v", ErrCorrupt,
			filepath.Join(dir, metaFile), m.Format, m.ID, m.Key, FormatVersion, id, k)
	}
	if err := verify(dir, m.Files); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &Snapshot{Dir: dir, Meta: m}, nil
}

// verify checks that dir holds exactly files (besides meta.json), each with its size
// and checksum.
func verify(dir string, files []File) error {
	if len(files) == 0 {
		return fmt.Errorf("%s lists no files", filepath.Join(dir, metaFile))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != metaFile && !slices.ContainsFunc(files, func(f File) bool { return f.Name == e.Name() }) {
			return fmt.Errorf("%s holds %s, which %s does not list", dir, e.Name(), metaFile)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if f.Name != filepath.Base(f.Name) || f.Name == metaFile || strings.HasPrefix(f.Name, ".") {
			return fmt.Errorf("%s lists file %q; want a plain file name", filepath.Join(dir, metaFile), f.Name)
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() || st.Size() != f.Size {
			return fmt.Errorf("%s: %s, %d bytes; %s says a regular file of %d bytes", p, st.Mode().Type(), st.Size(), metaFile, f.Size)
		}
		sum, _, err := fileChecksum(p)
		if err != nil {
			return err
		}
		if sum != f.Checksum {
			return fmt.Errorf("%s: checksum %s, %s says %s", p, sum, metaFile, f.Checksum)
		}
	}
	return nil
}

func readMeta(dir string) (Meta, error) {
	f, err := os.Open(filepath.Join(dir, metaFile))
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMeta+1))
	if err != nil {
		return Meta{}, err
	}
	if len(b) > maxMeta {
		return Meta{}, fmt.Errorf("larger than %d bytes", maxMeta)
	}
	var m Meta
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		return Meta{}, fmt.Errorf("decode: %w", err)
	}
	return m, nil
}

// BuildFunc saves a guest into dir (an empty private directory) and returns the saved
// guest's agent secret.
type BuildFunc func(ctx context.Context, dir string) (secret string, err error)

// Build makes the snapshot for k with build, holding the key's lock: when another
// process built it while this one waited, that snapshot is returned instead. A
// snapshot already there that fails its checks is replaced. The new snapshot appears
// whole (a temporary directory renamed into place) or not at all.
func (s *Store) Build(ctx context.Context, k Key, build BuildFunc) (*Snapshot, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx, k.ID())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if snap, err := s.Load(k); err == nil {
		return snap, nil
	}
	return s.buildLocked(ctx, k, build)
}

func (s *Store) buildLocked(ctx context.Context, k Key, build BuildFunc) (*Snapshot, error) {
	id := k.ID()
	tmp, err := os.MkdirTemp(s.dir, ".build-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up a failed build
	start := time.Now()
	secret, err := build(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("build snapshot %s: %w", id, err)
	}
	m := Meta{Format: FormatVersion, ID: id, Key: k, Secret: secret, Created: time.Now().UTC(), BuildMS: time.Since(start).Milliseconds()}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("build snapshot %s: the VMM left %s, which is not a regular file", id, p)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return nil, err
		}
		sum, size, err := fileChecksum(p)
		if err != nil {
			return nil, fmt.Errorf("build snapshot %s: %w", id, err)
		}
		m.Files = append(m.Files, File{Name: e.Name(), Size: size, Checksum: sum})
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("build snapshot %s: the VMM saved no files", id)
	}
	if err := writeMeta(tmp, m); err != nil {
		return nil, err
	}
	dst := s.path(id)
	if err := os.RemoveAll(dst); err != nil {
		return nil, fmt.Errorf("replace snapshot %s: %w", id, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, fmt.Errorf("install snapshot %s: %w", id, err)
	}
	return &Snapshot{Dir: dst, Meta: m}, nil
}

func writeMeta(dir string, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, metaFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write snapshot metadata: %w", err)
	}
	return nil
}

// lockPoll paces the wait for another process's build.
const lockPoll = 50 * time.Millisecond

// lock takes the key's lock file (flock, released if the process dies), waiting until
// ctx ends.
func (s *Store) lock(ctx context.Context, id string) (func(), error) {
	p := filepath.Join(s.dir, "."+id+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot lock %s: %w", p, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("snapshot lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another voidbox building snapshot %s (lock %s): %w", id, p, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// Entry is one snapshot directory as List sees it: its metadata, or why it is
// unreadable.
type Entry struct {
	ID   string
	Meta Meta
	Err  error
	// Disk is the space its files take on disk: the memory file is sparse, so this is
	// far below Meta.Size() (the guest memory the snapshot stands for).
	Disk int64
}

// List returns the store's snapshots by ID, without verifying checksums (Load does).
func (s *Store) List() ([]Entry, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store %s: %w", s.dir, err)
	}
	var out []Entry
	for _, e := range entries {
		if !e.IsDir() || CheckID(e.Name()) != nil {
			continue
		}
		m, err := readMeta(s.path(e.Name()))
		out = append(out, Entry{ID: e.Name(), Meta: m, Err: err, Disk: diskUsage(s.path(e.Name()))})
	}
	return out, nil
}

// diskUsage is the space the regular files directly in dir take on disk (allocated
// blocks, not their apparent sizes).
func diskUsage(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
	}
	return n
}

// Remove deletes the snapshot id, waiting for a build of it to end.
func (s *Store) Remove(ctx context.Context, id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if _, err := os.Stat(s.path(id)); err != nil {
		return fmt.Errorf("snapshot %s: %w", id, err)
	}
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	// The lock file stays: removing it while another process waits on it would let a
	// third take a lock on a new file beside it.
	if err := os.RemoveAll(s.path(id)); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return nil
}

// Invalidate removes the snapshot for k after it failed to restore (so the next stage
// rebuilds it rather than failing the same way); a build under way is waited for.
func (s *Store) Invalidate(ctx context.Context, k Key) error {
	id := k.ID()
	unlock, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	return os.RemoveAll(s.path(id))
}
