package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// PullPolicy says when a tag is resolved against its registry.
type PullPolicy int

const (
	// PullAlways resolves a tag every time; when the registry cannot be
	// reached, the digest it last resolved to is used (Image.Warning).
	PullAlways PullPolicy = iota
	// PullMissing uses the digest a tag last resolved to when that image is
	// cached, without asking the registry.
	PullMissing
)

// parallelLayers is how many layers download at a time (Docker's default).
const parallelLayers = 3

// PullOptions shape one Pull.
type PullOptions struct {
	Policy PullPolicy
	// ArtifactType is the type of artifact wanted; "" wants a container
	// image. Anything else is refused with ErrWrongType before its layers
	// are downloaded.
	ArtifactType string
	// Progress, if set, receives layer progress; calls are serialized.
	Progress func(Progress)
}

// Status of a layer in a Progress report.
type Status int

const (
	StatusCached      Status = iota // already in the cache, nothing to download
	StatusDownloading               // Done bytes of Total so far
	StatusDone                      // downloaded and verified
)

// Progress reports one layer of a pull.
type Progress struct {
	Ref    string
	Layer  string // digest
	Index  int    // 0-based, lowest layer first
	Count  int    // layers in the image
	Done   int64  // compressed bytes
	Total  int64
	Status Status
}

// ErrBadReference is wrapped by the errors of Open, Pull and Remove for a
// reference, digest or registry name that does not parse: a usage mistake,
// not a registry problem.
var ErrBadReference = errors.New("not valid")

// refSyntax is what a reference looks like, for error messages.
const refSyntax = "[registry[:port]/]path[:tag][@sha256:HEX] with lower-case path components"

// parseRef parses a reference (defaults: Docker Hub, tag latest), marking
// the registry insecure when the store was told so.
func parseRef(s string, insecure map[string]bool) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("image reference %q is %w; want %s (%v)", s, ErrBadReference, refSyntax, err)
	}
	if insecure[ref.Context().RegistryStr()] {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// CheckReference says whether ref is an image reference Pull and Push
// take; its error wraps ErrBadReference and says what one looks like.
func CheckReference(ref string) error {
	_, err := parseRef(ref, nil)
	return err
}

// Pull makes the image ref (linux/amd64) available in the cache and
// describes it.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := parseRef(ref, s.insecure)
	if err != nil {
		return nil, fmt.Errorf("oci: pull: %w", err)
	}
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	key := r.Name()
	refs, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	rec, known := refs[key]
	_, isTag := r.(name.Tag)
	if d, ok := r.(name.Digest); ok {
		if img, err := s.loadDigest(key, d.DigestStr()); err == nil {
			if err := checkType(img.ArtifactType, opts.ArtifactType); err != nil {
				return nil, explain("pull", ref, r, err)
			}
			if !known { // cached through another reference: list this one too
				err := s.updateRefs(ctx, func(m map[string]record) {
					m[key] = record{Digest: img.Digest, Index: img.Index, Resolved: s.now().UTC()}
				})
				if err != nil {
					return nil, err
				}
			}
			s.reportCached(img, opts.Progress)
			return img, nil
		}
	}
	if isTag && known && opts.Policy == PullMissing {
		if img, err := s.load(key, rec.Digest); err == nil {
			if err := checkType(img.ArtifactType, opts.ArtifactType); err != nil {
				return nil, explain("pull", ref, r, err)
			}
			img.Index = rec.Index
			s.reportCached(img, opts.Progress)
			return img, nil
		}
	}
	img, err := s.fetch(ctx, r, opts)
	if err == nil {
		return img, nil
	}
	if isTag && known && ctx.Err() == nil && unreachable(err) {
		if img, lerr := s.load(key, rec.Digest); lerr == nil && checkType(img.ArtifactType, opts.ArtifactType) == nil {
			img.Index = rec.Index
			img.Warning = fmt.Sprintf("registry %s unreachable (%v); using %s, which %s resolved to on %s",
				r.Context().RegistryStr(), err, rec.Digest, key, rec.Resolved.Format("2006-01-02 15:04:05 MST"))
			s.reportCached(img, opts.Progress)
			return img, nil
		}
	}
	return nil, explain("pull", ref, r, err)
}

func (s *Store) reportCached(img *Image, progress func(Progress)) {
	if progress == nil {
		return
	}
	for i, l := range img.Layers {
		progress(Progress{Ref: img.Ref, Layer: l.Digest, Index: i, Count: len(img.Layers), Done: l.Size, Total: l.Size, Status: StatusCached})
	}
}

func (s *Store) remoteOptions(ctx context.Context) []remote.Option {
	base := s.transport
	if base == nil {
		base = remote.DefaultTransport
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(s.keychain),
		remote.WithTransport(httpPolicy{base: base, insecure: s.insecure}), remote.WithPlatform(Platform),
		remote.WithUserAgent("voidbox")}
}

// fetch resolves r against its registry and downloads what is missing.
func (s *Store) fetch(ctx context.Context, r name.Reference, opts PullOptions) (*Image, error) {
	ro := s.remoteOptions(ctx)
	// Resolving the manifest is bounded on its own, so that a registry that
	// does not answer (a black-holed address) falls back to the cache in
	// seconds; downloads are bounded only by ctx.
	rctx, cancel := context.WithTimeout(ctx, s.resolveTimeout)
	defer cancel()
	resolve := s.remoteOptions(rctx)
	desc, err := remote.Get(r, resolve...)
	if err != nil {
		return nil, err
	}
	digest, rawManifest, index := desc.Digest.String(), desc.Manifest, ""
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		child, err := pickPlatform(im)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		if err := s.putBlob(desc.Digest.String(), int64(len(desc.Manifest)), bytes.NewReader(desc.Manifest), nil); err != nil {
			return nil, err
		}
		cdesc, err := remote.Get(r.Context().Digest(child.Digest.String()), resolve...)
		if err != nil {
			return nil, fmt.Errorf("the %s image %s of index %s: %w", Platform.Architecture, child.Digest, desc.Digest, err)
		}
		if !cdesc.MediaType.IsImage() {
			return nil, fmt.Errorf("the %s entry %s of index %s is a %s, not an image manifest", Platform.Architecture, child.Digest, desc.Digest, cdesc.MediaType)
		}
		index, digest, rawManifest = desc.Digest.String(), child.Digest.String(), cdesc.Manifest
	case desc.MediaType.IsImage():
	default:
		return nil, fmt.Errorf("it is a %s, not a container image or image index", desc.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	if err := checkType(artifactTypeOf(m), opts.ArtifactType); err != nil {
		return nil, err
	}
	cfgDigest := m.Config.Digest.String()
	if _, err := os.Stat(s.blobPath(cfgDigest)); err != nil {
		if err := s.download(r, ro, cfgDigest, m.Config.Size, nil); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	rawConfig, err := s.readBlob(cfgDigest, maxConfigSize)
	if err != nil {
		return nil, err
	}
	img, err := imageFrom(r.Name(), digest, rawManifest, rawConfig)
	if err != nil {
		return nil, err
	}
	img.Index = index
	if err := s.downloadLayers(ctx, r, ro, img, opts.Progress); err != nil {
		return nil, err
	}
	if err := s.putBlob(digest, int64(len(rawManifest)), bytes.NewReader(rawManifest), nil); err != nil {
		return nil, err
	}
	err = s.updateRefs(ctx, func(m map[string]record) {
		m[r.Name()] = record{Digest: digest, Index: index, Resolved: s.now().UTC()}
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// pickPlatform finds the linux/amd64 image in a multi-platform index.
func pickPlatform(im *v1.IndexManifest) (v1.Descriptor, error) {
	var seen []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.Platform.OS == Platform.OS && d.Platform.Architecture == Platform.Architecture {
			return d, nil
		}
		seen = append(seen, d.Platform.String())
	}
	return v1.Descriptor{}, fmt.Errorf("no %s image among its platforms %v", Platform, seen)
}

// downloadLayers fetches the layers not yet cached, a few at a time.
func (s *Store) downloadLayers(ctx context.Context, r name.Reference, ro []remote.Option, img *Image, progress func(Progress)) error {
	var mu sync.Mutex
	report := func(p Progress) {
		if progress != nil {
			mu.Lock()
			defer mu.Unlock()
			progress(p)
		}
	}
	img.FromCache = true
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelLayers)
	ro = append(slices.Clip(ro), remote.WithContext(gctx)) // the first failure stops the other downloads
	for i, l := range img.Layers {
		p := Progress{Ref: img.Ref, Layer: l.Digest, Index: i, Count: len(img.Layers), Total: l.Size}
		if fi, err := os.Stat(s.blobPath(l.Digest)); err == nil && fi.Size() == l.Size {
			p.Done, p.Status = l.Size, StatusCached
			report(p)
			continue
		}
		img.FromCache = false
		g.Go(func() error {
			p.Status = StatusDownloading
			report(p)
			err := s.download(r, ro, l.Digest, l.Size, func(n int64) {
				p.Done = n
				report(p)
			})
			if err != nil {
				return fmt.Errorf("layer %d/%d: %w", i+1, len(img.Layers), err)
			}
			p.Done, p.Status = l.Size, StatusDone
			report(p)
			return nil
		})
	}
	return g.Wait()
}

// download stores one blob of r's repository.
func (s *Store) download(r name.Reference, ro []remote.Option, digest string, size int64, onBytes func(int64)) error {
	if _, err := parseDigest(digest); err != nil {
		return err
	}
	l, err := remote.Layer(r.Context().Digest(digest), ro...)
	if err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	defer rc.Close()
	return s.putBlob(digest, size, rc, onBytes)
}

// unreachable says whether err means the registry could not be asked (no
// connection, DNS, TLS, a server error or rate limit), as opposed to an
// answer (unknown tag, refused credentials) or a bad image.
func unreachable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up (Ctrl-C): that is what to report
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// explain turns a registry error into a message that names the operation
// (pull, push) and the reference, and says what to do.
func explain(op, ref string, r name.Reference, err error) error {
	reg := r.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		var codes []string
		for _, d := range te.Errors {
			codes = append(codes, d.String())
		}
		detail := fmt.Sprintf("HTTP %d", te.StatusCode)
		if len(codes) > 0 {
			detail += ": " + strings.Join(codes, "; ")
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("oci: %s %s: registry %s refused access (%s); log in with `docker login %s` or configure a credential helper in %s",
				op, ref, reg, detail, reg, dockerConfig())
		case http.StatusNotFound:
			what := "image"
			if t, ok := r.(name.Tag); ok {
				what = fmt.Sprintf("tag %q", t.TagStr())
			} else if d, ok := r.(name.Digest); ok {
				what = "digest " + d.DigestStr()
			}
			return fmt.Errorf("oci: %s %s: %s not found in %s (%s)", op, ref, what, r.Context().Name(), detail)
		}
	}
	if plainHTTP(err) {
		how := "pulls over HTTP only from loopback registries and from"
		if op == "push" {
			how = "pushes over HTTP only to loopback registries and to"
		}
		return fmt.Errorf("oci: %s %s: registry %s answers in plain HTTP, not HTTPS; voidbox %s those named with --insecure-registry %s (do that only if you trust every network hop to it: anyone on the way can change what is %sed)",
			op, ref, reg, how, reg, op)
	}
	if unreachable(err) && op == "pull" {
		return fmt.Errorf("oci: pull %s: registry %s unreachable and the image is not cached: %w", ref, reg, err)
	}
	if unreachable(err) {
		return fmt.Errorf("oci: %s %s: registry %s unreachable: %w", op, ref, reg, err)
	}
	return fmt.Errorf("oci: %s %s: %w", op, ref, err)
}

// dockerConfig is where authn.DefaultKeychain reads credentials.
func dockerConfig() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	return "~/.docker/config.json"
}

// httpPolicy refuses plain HTTP except to loopback hosts and registries
// named insecure (ggcr alone would also use it for private addresses).
type httpPolicy struct {
	base     http.RoundTripper
	insecure map[string]bool
}

func (p httpPolicy) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Host) && !p.insecure[req.URL.Host] {
		return nil, fmt.Errorf("plain HTTP to %s refused: only loopback registries and those named insecure (--insecure-registry %s) are reached without TLS",
			req.URL.Host, req.URL.Host)
	}
	return p.base.RoundTrip(req)
}

// plainHTTP says whether err means the registry answered an HTTPS request in
// plain HTTP (net/http says so only in its message; there is no error type).
// httpPolicy's refusal alone does not mean that: ggcr also tries HTTP after
// HTTPS failed for any reason on a private address, which may not answer at all.
func plainHTTP(err error) bool {
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
