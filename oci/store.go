package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"

	"github.com/voidbox/voidbox/oci/unpack"
)

// Options configure a Store.
type Options struct {
	// Dir is the cache directory; empty means DefaultDir().
	Dir string
	// Insecure lists registries (host or host:port, as in the reference) that
	// may be reached over plain HTTP. Loopback registries always may.
	Insecure []string
	// Keychain finds registry credentials; nil means authn.DefaultKeychain
	// (the Docker config file and its credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport under ggcr's auth and retry layers; nil
	// means remote.DefaultTransport.
	Transport http.RoundTripper
	// Limits bound the unpacking of an image (zero values: unpack's defaults).
	Limits unpack.Options
}

// DefaultResolveTimeout bounds the manifest requests of a pull (connecting,
// authenticating, reading the manifest), not the layer downloads.
const DefaultResolveTimeout = 20 * time.Second

// Store is the image cache. Several processes may use the same directory.
type Store struct {
	dir       string
	insecure  map[string]bool
	keychain  authn.Keychain
	transport http.RoundTripper
	limits    unpack.Options
	// chown says whether the unpacker may set owners (running as root); the
	// disk builder applies them with debugfs otherwise. A field so tests can
	// take the unprivileged path as root.
	chown bool
	now   func() time.Time
	// resolveTimeout bounds the manifest requests of a pull.
	resolveTimeout time.Duration
}

// DefaultDir is ~/.voidbox/oci.
func DefaultDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("oci: cache directory: %w", err)
	}
	return filepath.Join(home, ".voidbox", "oci"), nil
}

// Open opens (creating it if needed) the cache in opts.Dir.
func Open(opts Options) (*Store, error) {
	dir := opts.Dir
	if dir == "" {
		d, err := DefaultDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	s := &Store{dir: dir, insecure: map[string]bool{}, keychain: opts.Keychain, transport: opts.Transport,
		limits: opts.Limits, chown: os.Geteuid() == 0, now: time.Now, resolveTimeout: DefaultResolveTimeout}
	if s.keychain == nil {
		s.keychain = authn.DefaultKeychain
	}
	for _, r := range opts.Insecure {
		reg, err := name.NewRegistry(r, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("oci: insecure registry %q is %w; want a registry host[:port] as in a reference (%v)", r, ErrBadReference, err)
		}
		s.insecure[reg.RegistryStr()] = true
	}
	for _, d := range []string{dir, s.path("blobs", "sha256"), s.path("disks"), s.path("tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci: cache directory: %w", err)
		}
	}
	return s, nil
}

// Dir is the cache directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// lock takes the store lock, shared (pulls, builds) or exclusive (Remove,
// Prune), waiting until ctx is done. The returned func releases it.
func (s *Store) lock(ctx context.Context, exclusive bool) (func(), error) {
	return flock(ctx, s.path("lock"), exclusive)
}

func flock(ctx context.Context, file string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("oci: lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("oci: lock %s: %w", file, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("oci: waiting for the cache lock %s (another voidbox is using the cache): %w", file, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// record is what refs.json keeps per reference.
type record struct {
	Digest   string    `json:"digest"`          // image manifest
	Index    string    `json:"index,omitempty"` // multi-platform index it came from
	Resolved time.Time `json:"resolved"`
}

type refsFile struct {
	Refs map[string]record `json:"refs"`
}

func (s *Store) readRefs() (map[string]record, error) {
	b, err := os.ReadFile(s.path("refs.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	var f refsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("oci: %s: %w (remove the file to forget the cached references)", s.path("refs.json"), err)
	}
	if f.Refs == nil {
		f.Refs = map[string]record{}
	}
	return f.Refs, nil
}

// updateRefs applies fn to the records under an exclusive lock of
// refs.json (separate from the store lock, which a pull holds shared).
func (s *Store) updateRefs(ctx context.Context, fn func(map[string]record)) error {
	unlock, err := flock(ctx, s.path("refs.lock"), true)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return err
	}
	fn(refs)
	b, err := json.MarshalIndent(refsFile{Refs: refs}, "", "  ")
	if err != nil {
		return fmt.Errorf("oci: refs: %w", err)
	}
	return writeFileAtomic(s.path("refs.json"), s.path("tmp"), b)
}

// writeFileAtomic replaces file with data through a temp file in tmpDir.
func writeFileAtomic(file, tmpDir string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "write-*")
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("oci: write %s: %w", file, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("oci: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("oci: write %s: %w", file, err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}

// Entry is a cached reference, as List shows it.
type Entry struct {
	Ref      string    `json:"ref"`
	Digest   string    `json:"digest"`
	Index    string    `json:"index,omitempty"`
	Resolved time.Time `json:"resolved"`
	Size     int64     `json:"size"` // compressed config and layers
	Disk     bool      `json:"disk"` // a rootfs disk is built
}

// List returns the cached references, sorted.
func (s *Store) List() ([]Entry, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(refs))
	for ref, r := range refs {
		e := Entry{Ref: ref, Digest: r.Digest, Index: r.Index, Resolved: r.Resolved}
		if img, err := s.load(ref, r.Digest); err == nil {
			e.Size = img.Size
		}
		if _, err := os.Stat(s.diskPath(r.Digest)); err == nil {
			e.Disk = true
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// PruneReport says what Remove or Prune deleted.
type PruneReport struct {
	Refs  []string // references forgotten (Remove only)
	Blobs int
	Disks int
	Bytes int64
}

// Remove forgets ref (a reference as given to Pull, or an image digest
// "sha256:...", which removes every reference to it) and deletes what no
// other reference needs.
func (s *Store) Remove(ctx context.Context, ref string) (*PruneReport, error) {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	var drop []string
	if strings.HasPrefix(ref, "sha256:") {
		if _, err := parseDigest(ref); err != nil {
			return nil, fmt.Errorf("oci: remove: image digest %q is %w; want sha256: and 64 lower-case hex digits, as voidbox image ls shows it", ref, ErrBadReference)
		}
		for k, r := range refs {
			if r.Digest == ref || r.Index == ref {
				drop = append(drop, k)
			}
		}
	} else {
		r, err := parseRef(ref, s.insecure)
		if err != nil {
			return nil, fmt.Errorf("oci: remove: %w", err)
		}
		if _, ok := refs[r.Name()]; ok {
			drop = append(drop, r.Name())
		}
	}
	if len(drop) == 0 {
		return nil, fmt.Errorf("oci: remove %s: no such image in the cache %s (voidbox image ls lists them)", ref, s.dir)
	}
	sort.Strings(drop)
	err = s.updateRefs(ctx, func(m map[string]record) {
		for _, k := range drop {
			delete(m, k)
		}
	})
	if err != nil {
		return nil, err
	}
	rep, err := s.gc()
	if rep != nil {
		rep.Refs = drop
	}
	return rep, err
}

// Prune deletes every blob and disk no cached reference needs, and leftovers
// of interrupted pulls and builds.
func (s *Store) Prune(ctx context.Context) (*PruneReport, error) {
	unlock, err := s.lock(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.gc()
}

// gc runs under the exclusive store lock: no pull or build is in progress.
func (s *Store) gc() (*PruneReport, error) {
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	images := map[string]bool{}
	for ref, r := range refs {
		keep[r.Digest] = true
		if r.Index != "" {
			keep[r.Index] = true
		}
		img, err := s.load(ref, r.Digest)
		if err != nil {
			continue // incomplete: its blobs that exist are unreachable anyway
		}
		images[img.Digest] = true
		keep[img.ConfigDigest] = true
		for _, l := range img.Layers {
			keep[l.Digest] = true
		}
	}
	rep := &PruneReport{}
	remove := func(p string, count *int) error {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("oci: prune: %w", err)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("oci: prune: %w", err)
		}
		rep.Bytes += fi.Size()
		if count != nil {
			*count++
		}
		return nil
	}
	blobs, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		return nil, fmt.Errorf("oci: prune: %w", err)
	}
	for _, b := range blobs {
		if !keep["sha256:"+b.Name()] {
			if err := remove(s.path("blobs", "sha256", b.Name()), &rep.Blobs); err != nil {
				return rep, err
			}
		}
	}
	disks, err := os.ReadDir(s.path("disks"))
	if err != nil {
		return nil, fmt.Errorf("oci: prune: %w", err)
	}
	for _, d := range disks {
		n := d.Name()
		hex := n[:len(n)-len(filepath.Ext(n))]
		if images["sha256:"+hex] {
			continue
		}
		var count *int
		if filepath.Ext(n) == ".ext4" {
			count = &rep.Disks
		}
		if err := remove(s.path("disks", n), count); err != nil {
			return rep, err
		}
	}
	tmp, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return nil, fmt.Errorf("oci: prune: %w", err)
	}
	for _, t := range tmp {
		if err := remove(s.path("tmp", t.Name()), nil); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
