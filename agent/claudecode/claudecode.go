// Package claudecode distributes Anthropic's claude-code CLI to agent boxes.
// Install fetches the native linux-x64 (glibc) build from the npm registry's
// HTTP API (no npm client), checks the tarball against the sha512 integrity
// the registry's metadata gives before anything in it is used, and caches the
// one executable it needs under ~/.voidbox/agents/claude-code/VERSION/claude.
// RootDisk builds, once per version, the read-only ext4 root file system an
// agent box without image= boots on: Debian minbase (bash, coreutils, glibc,
// ca-certificates) with claude at /usr/local/bin/claude.
package claudecode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/voidbox/voidbox/internal/digest"
)

const (
	// PackageName is the npm package holding the glibc linux-x64 executable.
	PackageName = "@anthropic-ai/claude-code-linux-x64"
	// DefaultVersion is the claude-code voidbox is tested with; Options.Version
	// and --agent-version override it.
	DefaultVersion = "2.1.332"
	// DefaultRegistry is the npm registry Install asks when Options.Registry is empty.
	DefaultRegistry = "https://registry.npmjs.org"
	// Latest, as a version, installs what the registry's dist-tags call latest.
	Latest = "latest"
)

// File names inside a version's directory.
const (
	binaryName   = "claude"
	installMeta  = "install.json"
	rootDiskName = "root.ext4"
	rootDiskMeta = "root.json"
)

// versionRE is an npm version as this package accepts it: it becomes a
// directory name, so nothing that could climb out of the cache.
var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z][0-9A-Za-z.-]*)?$`)

// CheckVersion says whether v can name a version ("latest" included).
func CheckVersion(v string) error {
	if v == Latest || (versionRE.MatchString(v) && len(v) <= 64) {
		return nil
	}
	return fmt.Errorf("claude-code version %q is not a version: want MAJOR.MINOR.PATCH (e.g. %s) or %q", v, DefaultVersion, Latest)
}

// DefaultCacheDir is ~/.voidbox/agents/claude-code.
func DefaultCacheDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("claude-code cache: %w", err)
	}
	return filepath.Join(home, ".voidbox", "agents", "claude-code"), nil
}

func cacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return DefaultCacheDir()
}

// Installed is one installed version, as install.json beside the executable
// records it.
type Installed struct {
	Version string `json:"version"`
	Path    string `json:"-"` // the claude executable
	// Integrity is the registry's sha512 of the tarball it came from ("sha512-BASE64").
	Integrity string `json:"integrity"`
	Tarball   string `json:"tarball"`
	// SHA256 and Size are the executable's, so it is verified without the registry.
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Installed time.Time `json:"installed"`
	FromCache bool      `json:"-"` // Install found it already installed
}

// Dir is the version's directory: the executable, its metadata, its root disk.
func (in *Installed) Dir() string { return filepath.Dir(in.Path) }

// readInstalled loads dir's install.json and checks the executable's size
// and mode against it; with hash, its sha256 too (about a second for the
// 400 MB executable).
func readInstalled(dir string, hash bool) (*Installed, error) {
	b, err := os.ReadFile(filepath.Join(dir, installMeta))
	if err != nil {
		return nil, err
	}
	in := &Installed{}
	if err := json.Unmarshal(b, in); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, installMeta), err)
	}
	in.Path = filepath.Join(dir, binaryName)
	fi, err := os.Lstat(in.Path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 || fi.Size() != in.Size || in.Version != filepath.Base(dir) {
		return nil, fmt.Errorf("%s (%s, %d bytes) does not match %s (version %s, %d bytes, mode 0755)",
			in.Path, fi.Mode(), fi.Size(), installMeta, in.Version, in.Size)
	}
	if hash {
		sum, err := digest.File(in.Path)
		if err != nil {
			return nil, err
		}
		if sum != in.SHA256 {
			return nil, fmt.Errorf("%s has sha256 %s, %s says %s", in.Path, sum, installMeta, in.SHA256)
		}
	}
	return in, nil
}

// Entry is one version directory, as List shows it.
type Entry struct {
	Installed
	// Problem says why the version is not usable (an interrupted install, a
	// changed executable); Install repairs it.
	Problem string `json:"problem,omitempty"`
	// RootDisk is the built root disk's path, "" when it is not built.
	RootDisk     string `json:"root_disk,omitempty"`
	RootDiskSize int64  `json:"root_disk_size,omitempty"`
}

// List returns the versions under cacheDir (DefaultCacheDir when ""), oldest
// version first. It checks sizes, not hashes, so it stays fast.
func List(dir string) ([]Entry, error) {
	dir, err := cacheDir(dir)
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claude-code cache: %w", err)
	}
	var list []Entry
	for _, de := range des {
		if !de.IsDir() || !versionRE.MatchString(de.Name()) {
			continue // tmp/, debs/, lock files
		}
		vdir := filepath.Join(dir, de.Name())
		e := Entry{Installed: Installed{Version: de.Name(), Path: filepath.Join(vdir, binaryName)}}
		if in, err := readInstalled(vdir, false); err != nil {
			e.Problem = "not installed completely: " + err.Error()
		} else {
			e.Installed = *in
		}
		if d, err := readRootDisk(vdir, e.SHA256); err == nil {
			e.RootDisk, e.RootDiskSize = d.Path, d.Size
		}
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool { return versionLess(list[i].Version, list[j].Version) })
	return list, nil
}

// versionLess orders MAJOR.MINOR.PATCH numerically, then by the rest as text.
func versionLess(a, b string) bool {
	var x, y [3]int
	var ra, rb string
	fmt.Sscanf(a, "%d.%d.%d%s", &x[0], &x[1], &x[2], &ra)
	fmt.Sscanf(b, "%d.%d.%d%s", &y[0], &y[1], &y[2], &rb)
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return ra < rb
}

// flock takes an exclusive lock on file, waiting while another process or
// goroutine holds it, until ctx ends. waiting is called once if it must wait.
func flock(ctx context.Context, file string, waiting func()) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for said := false; ; {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", file, err)
		}
		if !said && waiting != nil {
			waiting()
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock %s (another voidbox is installing): %w", file, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeFileAtomic writes data to file through a temporary file in the same
// directory and a rename, so a reader sees the old content or the new.
func writeFileAtomic(file string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return os.Rename(f.Name(), file)
}
