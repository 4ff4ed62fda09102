package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

func TestPullReportsProgressAndConfig(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	cfg := v1.Config{Env: []string{"PATH=/bin", "GREETING=hi"}, WorkingDir: "/home/app", User: "app",
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"}}
	base := ot.TarLayer(t, busyboxLayer(t), false)
	extra := ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", "zstd layer\n")), true)
	digest := ot.Push(t, reg.Ref("tools/busybox:1"), ot.NewImage(t, cfg, "amd64", base, extra))

	s := openStore(t, Options{})
	var events []Progress
	img := pull(t, s, reg.Ref("tools/busybox:1"), PullOptions{Progress: func(p Progress) { events = append(events, p) }})
	if img.Digest != digest || img.Ref != reg.Ref("tools/busybox:1") || img.FromCache || img.Warning != "" {
		t.Fatalf("image %+v, want digest %s from the registry", img, digest)
	}
	if !slices.Equal(img.Config.Env, cfg.Env) || img.Config.WorkingDir != "/home/app" || img.Config.User != "app" ||
		!slices.Equal(img.Config.Entrypoint, cfg.Entrypoint) || !slices.Equal(img.Config.Cmd, cfg.Cmd) {
		t.Errorf("config %+v, want %+v", img.Config, cfg)
	}
	if len(img.Layers) != 2 || img.Layers[1].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Fatalf("layers %+v", img.Layers)
	}
	if b, err := os.ReadFile(s.blobPath(img.Layers[1].Digest)); err != nil || !bytes.HasPrefix(b, []byte("\x28\xb5\x2f\xfd")) {
		t.Fatalf("layer 1 is not zstd in the cache: %v", err)
	}
	// Per layer: a start, byte counts that only grow, an end at the full size.
	for i, l := range img.Layers {
		var mine []Progress
		for _, e := range events {
			if e.Layer == l.Digest {
				mine = append(mine, e)
			}
		}
		if len(mine) < 3 || mine[0].Status != StatusDownloading || mine[len(mine)-1].Status != StatusDone {
			t.Fatalf("layer %d events %+v", i, mine)
		}
		for j, e := range mine {
			if e.Index != i || e.Count != 2 || e.Total != l.Size || (j > 0 && e.Done < mine[j-1].Done) {
				t.Fatalf("layer %d event %d: %+v", i, j, e)
			}
		}
		if last := mine[len(mine)-1]; last.Done != l.Size {
			t.Fatalf("layer %d ends at %d of %d", i, last.Done, l.Size)
		}
	}
	// A second pull downloads nothing and says every layer is cached.
	events = nil
	again := pull(t, s, reg.Ref("tools/busybox:1"), PullOptions{Progress: func(p Progress) { events = append(events, p) }})
	if !again.FromCache || len(events) != 2 || events[0].Status != StatusCached || events[1].Status != StatusCached {
		t.Fatalf("second pull: from cache %v, events %+v", again.FromCache, events)
	}
}

func TestMultiPlatformIndexPicksAmd64(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	arm := ot.NewImage(t, v1.Config{}, "arm64", ot.TarLayer(t, ot.Tar(t, ot.File("arch", "arm64")), false))
	amd := ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("arch", "amd64")), false))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	idxDigest := ot.PushIndex(t, reg.Ref("multi:latest"), idx)
	amdDigest, _ := amd.Digest()

	s := openStore(t, Options{})
	img := pull(t, s, reg.Ref("multi:latest"), PullOptions{})
	if img.Digest != amdDigest.String() || img.Index != idxDigest {
		t.Fatalf("got image %s from index %s, want %s from %s", img.Digest, img.Index, amdDigest, idxDigest)
	}
	d, err := s.Disk(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if got := debugfs(t, d.Path, "cat /arch"); !strings.Contains(got, "amd64") {
		t.Fatalf("/arch in the disk: %q", got)
	}
	// Pulling the index by digest works offline afterwards: the record maps it to the amd64 image.
	reg.Server.Close()
	byDigest := pull(t, s, reg.Ref("multi@"+idxDigest), PullOptions{})
	if byDigest.Digest != amdDigest.String() || byDigest.Warning != "" {
		t.Fatalf("index by digest, offline: %+v", byDigest)
	}

	armOnly := ot.NewRegistry(t, nil)
	ot.PushIndex(t, armOnly.Ref("armonly:1"), mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}}))
	_, err = s.Pull(context.Background(), armOnly.Ref("armonly:1"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), armOnly.Ref("armonly:1")) || !strings.Contains(err.Error(), "no linux/amd64 image among its platforms [linux/arm64]") {
		t.Fatalf("index without amd64: %v", err)
	}
	// A single-platform image of another architecture is refused too.
	ot.Push(t, armOnly.Ref("arm:1"), arm)
	_, err = s.Pull(context.Background(), armOnly.Ref("arm:1"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "is for linux/arm64") {
		t.Fatalf("arm64 image: %v", err)
	}
}

func TestCachedImageWorksWithRegistryStopped(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	digest := ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, busyboxLayer(t), false)))
	s := openStore(t, Options{})
	first := pull(t, s, reg.Ref("app:v1"), PullOptions{})
	reg.Server.Close()

	img := pull(t, s, reg.Ref("app:v1"), PullOptions{})
	if img.Digest != digest || !img.FromCache {
		t.Fatalf("offline pull: %+v", img)
	}
	for _, want := range []string{"registry " + reg.Host + " unreachable", "using " + digest, reg.Ref("app:v1") + " resolved to"} {
		if !strings.Contains(img.Warning, want) {
			t.Errorf("warning %q does not say %q", img.Warning, want)
		}
	}
	if byDigest := pull(t, s, reg.Ref("app@"+digest), PullOptions{}); byDigest.Warning != "" || byDigest.Digest != digest {
		t.Fatalf("by digest offline: %+v", byDigest)
	}
	if missing := pull(t, s, reg.Ref("app:v1"), PullOptions{Policy: PullMissing}); missing.Warning != "" || missing.Digest != digest {
		t.Fatalf("PullMissing offline: %+v", missing)
	}
	d, err := s.Disk(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	if got := debugfs(t, d.Path, "cat /home/app/notes"); !strings.Contains(got, "hello") {
		t.Fatalf("notes: %q", got)
	}
	// A tag never pulled has nothing to fall back on.
	_, err = s.Pull(context.Background(), reg.Ref("app:v2"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "pull "+reg.Ref("app:v2")) || !strings.Contains(err.Error(), "registry "+reg.Host+" unreachable and the image is not cached") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("uncached tag offline: %v", err)
	}
}

func TestPullErrorsNameTheReference(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false)))
	s := openStore(t, Options{})
	for _, tc := range []struct{ ref, want string }{
		{"Not A//Reference", `image reference "Not A//Reference" is not valid; want [registry[:port]/]path`},
		{reg.Ref("app:nope"), `pull ` + reg.Ref("app:nope") + `: tag "nope" not found in ` + reg.Ref("app")},
		{reg.Ref("other:v1"), `pull ` + reg.Ref("other:v1") + `: tag "v1" not found`},
		{reg.Ref("app@sha256:" + strings.Repeat("a", 64)), "digest sha256:aaaa"},
	} {
		_, err := s.Pull(context.Background(), tc.ref, PullOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull %q: got %v, want an error with %q", tc.ref, err, tc.want)
		}
		if bad := tc.ref == "Not A//Reference"; errors.Is(err, ErrBadReference) != bad {
			t.Errorf("pull %q: errors.Is(%v, ErrBadReference) should be %v", tc.ref, err, bad)
		}
	}
}

// A registry that speaks plain HTTP under a name that is not loopback is
// refused, saying which flag would allow it; with the flag the pull works.
func TestPlainHTTPRegistryIsExplained(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	img := ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false))
	for _, host := range []string{"registry.test:5000", "10.1.2.3:5000"} {
		// Which schemes ggcr tries differs: HTTPS alone for a public name,
		// HTTPS then HTTP for a private address.
		ref := host + "/app:v1"
		ot.Push(t, reg.Ref("app:v1"), img)
		s := openStore(t, Options{Transport: reg.Redirect()})
		_, err := s.Pull(context.Background(), ref, PullOptions{})
		for _, want := range []string{"pull " + ref + ": registry " + host + " answers in plain HTTP", "--insecure-registry " + host} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s without --insecure-registry: got %v, want %q in it", host, err, want)
			}
		}
		s = openStore(t, Options{Transport: reg.Redirect(), Insecure: []string{host}})
		if got := pull(t, s, ref, PullOptions{}); got.Ref != ref {
			t.Errorf("pulled %+v, want %s", got, ref)
		}
	}
	// A private address where nothing listens is unreachable, not an HTTP
	// registry, though the HTTP fallback was refused too.
	gone := ot.NewRegistry(t, nil)
	gone.Server.Close()
	s := openStore(t, Options{Transport: gone.Redirect()})
	_, err := s.Pull(context.Background(), "10.1.2.3:5000/app:v1", PullOptions{})
	if err == nil || strings.Contains(err.Error(), "answers in plain HTTP") || !strings.Contains(err.Error(), "registry 10.1.2.3:5000 unreachable") {
		t.Errorf("pull from a private address with nothing there: %v, want it called unreachable", err)
	}
}

// basicAuth wraps a registry so that it wants user:secret.
func basicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestAuth(t *testing.T) {
	reg := ot.NewRegistry(t, basicAuth)
	ref := reg.Ref("private:1")
	s := openStore(t, Options{}) // DOCKER_CONFIG is an empty dir: no credentials
	_, err := s.Pull(context.Background(), ref, PullOptions{})
	for _, want := range []string{"pull " + ref, "registry " + reg.Host + " refused access", "HTTP 401", "UNAUTHORIZED", "docker login " + reg.Host} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no credentials: got %v, want %q in it", err, want)
		}
	}
	// With credentials in the Docker config (the default keychain), the pull works.
	dir := os.Getenv("DOCKER_CONFIG")
	auth := base64.StdEncoding.EncodeToString([]byte("user:secret"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	img := ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false))
	if err := pushWithAuth(ref, img); err != nil {
		t.Fatal(err)
	}
	if got := pull(t, s, ref, PullOptions{}); got.Ref != ref {
		t.Fatalf("pulled %+v", got)
	}
}

func TestPlainHTTPOnlyForLoopbackAndInsecure(t *testing.T) {
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	p := httpPolicy{base: base, insecure: map[string]bool{"10.0.0.9:5000": true}}
	for url, ok := range map[string]bool{
		"http://127.0.0.1:5000/v2/": true, "http://localhost:5000/v2/": true, "http://[::1]:5000/v2/": true,
		"http://10.0.0.9:5000/v2/": true, "https://10.0.0.8:5000/v2/": true,
		"http://10.0.0.8:5000/v2/": false, "http://registry.example/v2/": false,
	} {
		req, _ := http.NewRequest("GET", url, nil)
		_, err := p.RoundTrip(req)
		if (err == nil) != ok {
			t.Errorf("%s: err %v, want allowed=%v", url, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--insecure-registry") {
			t.Errorf("%s: error %q does not say how to allow it", url, err)
		}
	}
	if _, err := Open(Options{Dir: t.TempDir(), Insecure: []string{"bad host/x"}}); !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), `"bad host/x" is not valid; want a registry host[:port]`) {
		t.Fatalf("bad insecure registry: %v", err)
	}
	// A registry named insecure is parsed with the http scheme allowed.
	r, err := parseRef("10.0.0.9:5000/app:1", map[string]bool{"10.0.0.9:5000": true})
	if err != nil || r.Context().Scheme() != "http" {
		t.Fatalf("insecure ref: %v scheme %s", err, r.Context().Scheme())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A registry that serves a layer whose bytes do not match its digest is
// caught before the blob enters the cache.
func TestCorruptBlobIsRefused(t *testing.T) {
	var target string
	reg := ot.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if target != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+target) {
				rec := &capture{header: http.Header{}}
				h.ServeHTTP(rec, r)
				body := []byte(strings.Repeat("x", len(rec.body)))
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.WriteHeader(rec.code)
				w.Write(body)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	l := ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false)
	ot.Push(t, reg.Ref("bad:1"), ot.NewImage(t, v1.Config{}, "amd64", l))
	d, _ := l.Digest()
	target = d.String()
	s := openStore(t, Options{})
	_, err := s.Pull(context.Background(), reg.Ref("bad:1"), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), reg.Ref("bad:1")) || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("corrupt layer: %v", err)
	}
	if _, err := os.Stat(s.blobPath(d.String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt blob stored: %v", err)
	}
}

type capture struct {
	header http.Header
	code   int
	body   []byte
}

func (c *capture) Header() http.Header         { return c.header }
func (c *capture) WriteHeader(code int)        { c.code = code }
func (c *capture) Write(b []byte) (int, error) { c.body = append(c.body, b...); return len(b), nil }

func TestConcurrentPullsShareTheCache(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	digest := ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, busyboxLayer(t), false)))
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		s := openStore(t, Options{Dir: dir})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			img, err := s.Pull(ctx, reg.Ref("app:v1"), PullOptions{})
			if err == nil && img.Digest != digest {
				err = fmt.Errorf("digest %s", img.Digest)
			}
			if err == nil {
				_, err = s.Disk(ctx, img)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("leftovers in tmp: %v", tmp)
	}
}

// A registry that accepts connections but never answers counts as
// unreachable once the resolve timeout passes: the cached digest is used.
func TestHangingRegistryFallsBackToTheCache(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	reg := ot.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hang.Load() {
				<-release
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	digest := ot.Push(t, reg.Ref("slow:1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false)))
	s := openStore(t, Options{})
	pull(t, s, reg.Ref("slow:1"), PullOptions{})
	hang.Store(true)
	s.resolveTimeout = 300 * time.Millisecond
	start := time.Now()
	img := pull(t, s, reg.Ref("slow:1"), PullOptions{})
	if img.Digest != digest || !strings.Contains(img.Warning, "unreachable") || !strings.Contains(img.Warning, "deadline exceeded") {
		t.Fatalf("hanging registry: %+v", img)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("fallback took %v", d)
	}
}
