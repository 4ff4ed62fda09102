// Package claudecodetest is a fake npm registry for tests of claude-code's
// installation: it serves @anthropic-ai/claude-code-linux-x64's package
// document and tarballs the way registry.npmjs.org does, on 127.0.0.1, with
// small tarballs whose package/claude is a shell script.
package claudecodetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// PackageName is the package the registry serves (claudecode.PackageName;
// this package cannot import claudecode, whose own tests use it).
const PackageName = "@anthropic-ai/claude-code-linux-x64"

// Entry is one tarball entry. Size, when set, is written in the header
// instead of len(Body), and the tarball ends there: a header that claims a
// huge file whose content never follows.
type Entry struct {
	Name string
	Body string
	Type byte // tar.TypeReg when 0; for tar.TypeSymlink Body is the target
	Size int64
}

// Tarball makes a gzipped tarball of entries.
func Tarball(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: 0o755, Size: int64(len(e.Body))}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeSymlink {
			hdr.Linkname, hdr.Size = e.Body, 0
		}
		if e.Size > 0 {
			hdr.Size = e.Size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.Size > 0 {
			if err := gz.Close(); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Script is the package/claude of fake version v: a shell script that
// answers --version like the real one.
func Script(v string) string {
	return "#!/bin/sh\necho '" + v + " (Claude Code)'\n"
}

// PackageJSON is package/package.json of version v.
func PackageJSON(v string) string {
	return `{"name":"` + PackageName + `","version":"` + v + `"}`
}

// GoodTarball holds what the real package holds, with Script(v) as claude.
func GoodTarball(t testing.TB, v string) []byte {
	return Tarball(t,
		Entry{Name: "package/claude", Body: Script(v)},
		Entry{Name: "package/package.json", Body: PackageJSON(v)},
		Entry{Name: "package/LICENSE.md", Body: "license"},
		Entry{Name: "package/README.md", Body: "readme"})
}

// Integrity is b's Subresource Integrity as the registry gives it.
func Integrity(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Registry is the fake registry. Its fields may be changed between requests.
type Registry struct {
	*httptest.Server
	mu        sync.Mutex
	tarballs  map[string][]byte
	integrity map[string]string
	latest    string
	DocGets   atomic.Int32 // package document requests
	TgzGets   atomic.Int32 // tarball requests
	accept    string
}

// NewRegistry serves tarballs (version to .tgz) with latest as the latest
// dist-tag, until the test ends.
func NewRegistry(t testing.TB, latest string, tarballs map[string][]byte) *Registry {
	r := &Registry{tarballs: tarballs, integrity: map[string]string{}, latest: latest}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// Tarball is the .tgz the registry serves for version v.
func (r *Registry) Tarball(v string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tarballs[v]
}

// SetIntegrity makes the document give sri as version v's integrity instead
// of its tarball's.
func (r *Registry) SetIntegrity(v, sri string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.integrity[v] = sri
}

// Accept is the Accept header of the last package document request.
func (r *Registry) Accept() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accept
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.URL.EscapedPath() == "/@anthropic-ai%2fclaude-code-linux-x64" {
		r.DocGets.Add(1)
		r.accept = req.Header.Get("Accept")
		versions := map[string]any{}
		for v, b := range r.tarballs {
			sri := Integrity(b)
			if o, ok := r.integrity[v]; ok {
				sri = o
			}
			versions[v] = map[string]any{"name": PackageName, "version": v,
				"dist": map[string]string{"integrity": sri, "tarball": r.URL + "/tarballs/" + v + ".tgz"}}
		}
		json.NewEncoder(w).Encode(map[string]any{"name": PackageName, "dist-tags": map[string]string{"latest": r.latest}, "versions": versions})
		return
	}
	if v, ok := strings.CutPrefix(req.URL.Path, "/tarballs/"); ok {
		if b, ok := r.tarballs[strings.TrimSuffix(v, ".tgz")]; ok {
			r.TgzGets.Add(1)
			w.Write(b)
			return
		}
	}
	http.NotFound(w, req)
}
