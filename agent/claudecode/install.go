package claudecode

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options says what Install installs, where from and where to.
type Options struct {
	Version    string       // DefaultVersion when empty; Latest asks the registry
	CacheDir   string       // DefaultCacheDir when empty
	Registry   string       // DefaultRegistry when empty: an https URL (http only to loopback)
	HTTPClient *http.Client // http.DefaultClient when nil
	// Progress, when set, hears what Install does, from one goroutine.
	Progress func(Progress)
}

// Status is the step Install is at.
type Status string

const (
	StatusDownloading Status = "downloading" // Done and Total are the tarball's bytes
	StatusExtracting  Status = "extracting"  // the tarball matched its integrity
	StatusInstalled   Status = "installed"
	StatusCached      Status = "cached" // it was installed already
)

// Progress is one report from Install.
type Progress struct {
	Version     string
	Status      Status
	Done, Total int64 // Total is 0 when the registry did not say
}

// Bounds on what a tarball may hold: the executable is about 400 MB and its
// tarball 190 MB today; the other files are a few hundred bytes.
const (
	maxTarball = 1 << 30
	maxBinary  = 2 << 30
	maxSmall   = 1 << 20
	maxEntries = 16
)

// smallFiles are the tarball's other entries: read (package.json) or skipped,
// never written anywhere.
var smallFiles = map[string]bool{"package/package.json": true, "package/README.md": true, "package/LICENSE.md": true}

// Install makes sure the version opts names is installed and returns it. An
// installed version whose executable still matches its recorded sha256 is
// returned as it is, without asking the registry; otherwise the tarball is
// downloaded, checked against the registry's sha512 integrity, and its
// package/claude put in place atomically. Concurrent Installs of one version
// (other processes too) wait for each other and download once.
func Install(ctx context.Context, opts Options) (*Installed, error) {
	version := opts.Version
	if version == "" {
		version = DefaultVersion
	}
	if err := CheckVersion(version); err != nil {
		return nil, err
	}
	dir, err := cacheDir(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if opts.Registry == "" {
		opts.Registry = DefaultRegistry
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	report := func(Progress) {}
	if opts.Progress != nil {
		report = opts.Progress
	}
	var rel *release
	if version == Latest {
		if rel, err = resolve(ctx, opts.HTTPClient, opts.Registry, version); err != nil {
			return nil, err
		}
		version = rel.Version
	}
	vdir := filepath.Join(dir, version)
	cached := func() (*Installed, bool) {
		in, err := readInstalled(vdir, true)
		if err != nil {
			return nil, false
		}
		in.FromCache = true
		report(Progress{Version: version, Status: StatusCached, Done: in.Size, Total: in.Size})
		return in, true
	}
	if in, ok := cached(); ok {
		return in, nil
	}
	unlock, err := flock(ctx, filepath.Join(dir, version+".lock"), nil)
	if err != nil {
		return nil, fmt.Errorf("claude-code %s: %w", version, err)
	}
	defer unlock()
	if in, ok := cached(); ok {
		return in, nil // another install finished while this one waited
	}
	if rel == nil {
		if rel, err = resolve(ctx, opts.HTTPClient, opts.Registry, version); err != nil {
			return nil, err
		}
	}
	in, err := install(ctx, opts.HTTPClient, dir, rel, report)
	if err != nil {
		return nil, fmt.Errorf("claude-code %s: %w", version, err)
	}
	return in, nil
}

// install downloads, verifies and extracts rel into dir/VERSION.
func install(ctx context.Context, client *http.Client, dir string, rel *release, report func(Progress)) (*Installed, error) {
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	tgz, err := download(ctx, client, tmp, rel, report)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tgz) // only the executable is kept
	report(Progress{Version: rel.Version, Status: StatusExtracting})
	vdir := filepath.Join(dir, rel.Version)
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return nil, err
	}
	// Whatever an interrupted install left no longer describes the executable.
	if err := os.Remove(filepath.Join(vdir, installMeta)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	in, err := extract(tgz, rel, vdir)
	if err != nil {
		return nil, err
	}
	in.Installed = time.Now().UTC()
	meta, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(vdir, installMeta), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	report(Progress{Version: rel.Version, Status: StatusInstalled, Done: in.Size, Total: in.Size})
	return in, nil
}

// parseIntegrity returns the sha512 digest of a Subresource Integrity value
// ("sha512-BASE64", possibly among other space-separated hashes).
func parseIntegrity(sri string) ([]byte, error) {
	for _, f := range strings.Fields(sri) {
		if b64, ok := strings.CutPrefix(f, "sha512-"); ok {
			sum, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || len(sum) != sha512.Size {
				return nil, fmt.Errorf("%q is not a sha512 integrity (sha512- and 64 bytes in base64)", f)
			}
			return sum, nil
		}
	}
	return nil, fmt.Errorf("%q holds no sha512 hash; want sha512-BASE64", sri)
}

// download fetches rel's tarball into a file in tmp and returns its path once
// its sha512 matches rel.Integrity; on any failure the file is gone.
func download(ctx context.Context, client *http.Client, tmp string, rel *release, report func(Progress)) (path string, err error) {
	want, err := parseIntegrity(rel.Integrity)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rel.Tarball, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download: GET %s: %s", rel.Tarball, resp.Status)
	}
	if resp.ContentLength > maxTarball {
		return "", fmt.Errorf("download: %s is %d bytes, more than the %d MiB a claude-code tarball may be", rel.Tarball, resp.ContentLength, maxTarball>>20)
	}
	f, err := os.CreateTemp(tmp, rel.Version+"-*.tgz")
	if err != nil {
		return "", err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	total := max(resp.ContentLength, 0)
	h := sha512.New()
	pw := &progressWriter{h: h, report: func(done int64) {
		report(Progress{Version: rel.Version, Status: StatusDownloading, Done: done, Total: total})
	}}
	n, err := io.Copy(io.MultiWriter(f, pw), io.LimitReader(resp.Body, maxTarball+1))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", rel.Tarball, err)
	}
	if n > maxTarball {
		return "", fmt.Errorf("download: %s is more than the %d MiB a claude-code tarball may be", rel.Tarball, maxTarball>>20)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return "", fmt.Errorf("download %s: got %d of %d bytes", rel.Tarball, n, resp.ContentLength)
	}
	if got := h.Sum(nil); subtle.ConstantTimeCompare(got, want) != 1 {
		return "", fmt.Errorf("download: the tarball %s has integrity sha512-%s, but the registry's metadata for %s says %s; the download was removed",
			rel.Tarball, base64.StdEncoding.EncodeToString(got), rel.Version, rel.Integrity)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// progressWriter hashes what passes and reports the running count.
type progressWriter struct {
	h      hash.Hash
	done   int64
	report func(done int64)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.done += int64(len(p))
	w.report(w.done)
	return len(p), nil
}

// extract writes the tarball's package/claude to vdir/claude (mode 0755,
// through a temporary file and a rename) and checks package/package.json
// names the package and version. Any other entry, a second package/claude,
// one that is not a regular file, or one over its size bound is refused.
func extract(tgz string, rel *release, vdir string) (*Installed, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("tarball: %w", err)
	}
	tr := tar.NewReader(gz)
	// package/claude goes to a temporary file, renamed into place only once
	// every entry has passed.
	var in *Installed
	defer func() {
		if in != nil {
			os.Remove(in.Path)
		}
	}()
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tarball: %w", err)
		}
		if entries == maxEntries {
			return nil, fmt.Errorf("tarball: more than %d entries; a claude-code package has 4", maxEntries)
		}
		switch {
		case hdr.Name == "package/" && hdr.Typeflag == tar.TypeDir:
			continue
		case hdr.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("tarball entry %q: type %q, want a regular file", hdr.Name, hdr.Typeflag)
		case hdr.Name == "package/claude":
			if in != nil {
				return nil, fmt.Errorf("tarball: package/claude appears twice")
			}
			if hdr.Size > maxBinary {
				return nil, fmt.Errorf("tarball entry package/claude is %d bytes, more than the %d MiB a claude-code executable may be", hdr.Size, maxBinary>>20)
			}
			if in, err = writeBinary(tr, hdr.Size, vdir); err != nil {
				return nil, err
			}
		case smallFiles[hdr.Name]:
			if hdr.Size > maxSmall {
				return nil, fmt.Errorf("tarball entry %q is %d bytes, more than the %d KiB it may be", hdr.Name, hdr.Size, maxSmall>>10)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("tarball entry %q: %w", hdr.Name, err)
			}
			if hdr.Name == "package/package.json" {
				if err := checkPackageJSON(b, rel.Version); err != nil {
					return nil, err
				}
			}
		default:
			return nil, fmt.Errorf("tarball entry %q: a claude-code package holds only package/claude, package/package.json, package/README.md and package/LICENSE.md", hdr.Name)
		}
	}
	if in == nil {
		return nil, fmt.Errorf("tarball: no package/claude")
	}
	path := filepath.Join(vdir, binaryName)
	if err := os.Rename(in.Path, path); err != nil {
		return nil, err
	}
	done := *in
	in = nil
	done.Path = path
	done.Version, done.Tarball, done.Integrity = rel.Version, rel.Tarball, rel.Integrity
	return &done, nil
}

func checkPackageJSON(b []byte, version string) error {
	var pj struct{ Name, Version string }
	if err := json.Unmarshal(b, &pj); err != nil {
		return fmt.Errorf("tarball entry package/package.json: %w", err)
	}
	if pj.Name != PackageName || pj.Version != version {
		return fmt.Errorf("tarball entry package/package.json names %s@%s, want %s@%s", pj.Name, pj.Version, PackageName, version)
	}
	return nil
}

// writeBinary copies size bytes of r to a temporary file in vdir, mode 0755;
// the Installed it returns has that file's path.
func writeBinary(r io.Reader, size int64, vdir string) (*Installed, error) {
	f, err := os.CreateTemp(vdir, "."+binaryName+"-*")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), r, size)
	if err == nil {
		err = f.Chmod(0o755)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("extract package/claude: %w", err)
	}
	return &Installed{Path: f.Name(), SHA256: hex.EncodeToString(h.Sum(nil)), Size: size}, nil
}
