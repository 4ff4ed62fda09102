package claudecode

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

// entry is one tarball entry; size, when set, is written in the header
// instead of len(body) (and the body left out): a header that claims a huge
// file.
type entry struct {
	name string
	body string
	typ  byte
	size int64
}

// tgz makes a gzipped tarball of entries.
func tgz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o755, Size: int64(len(e.body))}
		if typ == tar.TypeSymlink {
			hdr.Linkname, hdr.Size = e.body, 0
		}
		if e.size > 0 {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.size > 0 {
			// The claimed content never follows: the reader must refuse on the header.
			if err := gz.Close(); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
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

// script is the package/claude of fake version v: a shell script that
// answers --version like the real one.
func script(v string) string {
	return "#!/bin/sh\necho '" + v + " (Claude Code)'\n"
}

func packageJSON(v string) string {
	return `{"name":"` + PackageName + `","version":"` + v + `"}`
}

// goodTarball is what the real package holds, with a script for claude.
func goodTarball(t testing.TB, v string) []byte {
	return tgz(t,
		entry{name: "package/claude", body: script(v)},
		entry{name: "package/package.json", body: packageJSON(v)},
		entry{name: "package/LICENSE.md", body: "license"},
		entry{name: "package/README.md", body: "readme"})
}

func integrity(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// fakeRegistry serves the package document and tarballs the way
// registry.npmjs.org does, on 127.0.0.1, and counts what it was asked.
type fakeRegistry struct {
	*httptest.Server
	mu        sync.Mutex
	tarballs  map[string][]byte
	integrity map[string]string // overrides integrity(tarball)
	latest    string
	docGets   atomic.Int32
	tgzGets   atomic.Int32
	accept    atomic.Value // the last document request's Accept header
}

func newFakeRegistry(t testing.TB, latest string, tarballs map[string][]byte) *fakeRegistry {
	r := &fakeRegistry{tarballs: tarballs, integrity: map[string]string{}, latest: latest}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.URL.EscapedPath() == "/@anthropic-ai%2fclaude-code-linux-x64" {
		r.docGets.Add(1)
		r.accept.Store(req.Header.Get("Accept"))
		versions := map[string]any{}
		for v, b := range r.tarballs {
			in := integrity(b)
			if o, ok := r.integrity[v]; ok {
				in = o
			}
			versions[v] = map[string]any{"name": PackageName, "version": v,
				"dist": map[string]string{"integrity": in, "tarball": r.URL + "/tarballs/" + v + ".tgz"}}
		}
		json.NewEncoder(w).Encode(map[string]any{"name": PackageName, "dist-tags": map[string]string{"latest": r.latest}, "versions": versions})
		return
	}
	if v, ok := strings.CutPrefix(req.URL.Path, "/tarballs/"); ok {
		if b, ok := r.tarballs[strings.TrimSuffix(v, ".tgz")]; ok {
			r.tgzGets.Add(1)
			w.Write(b)
			return
		}
	}
	http.NotFound(w, req)
}
