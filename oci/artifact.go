package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// An artifact is an OCI image manifest that holds something other than a
// container's root filesystem (OCI image spec 1.1): its artifactType, or
// failing that its config's media type, says what it is, and its layers are
// opaque blobs the store downloads and verifies but never unpacks. Pull takes
// one only when PullOptions.ArtifactType names its type, and a container
// image only when it is empty, so neither is mistaken for the other.

// ErrWrongType is wrapped by Pull's error when the reference names an
// artifact where a container image was asked for, a container image where an
// artifact was, or an artifact of another type.
var ErrWrongType = errors.New("wrong media type")

// TitleAnnotation names a layer of an artifact (as oras does).
const TitleAnnotation = "org.opencontainers.image.title"

// artifactTypeOf is what m holds: "" for a container image, else its
// artifactType or, without one, its config's media type.
func artifactTypeOf(m *v1.Manifest) string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON, "":
		return ""
	}
	return string(m.Config.MediaType)
}

// checkType says whether an image of type got is what was asked for.
func checkType(got, want string) error {
	switch {
	case got == want:
		return nil
	case want == "":
		return fmt.Errorf("%w: it is an OCI artifact of type %q, not a container image", ErrWrongType, got)
	case got == "":
		return fmt.Errorf("%w: it is a container image, not an artifact of type %q", ErrWrongType, want)
	}
	return fmt.Errorf("%w: it is an artifact of type %q, not %q", ErrWrongType, got, want)
}

// ArtifactLayer is one blob of an artifact, stored as is (uncompressed).
type ArtifactLayer struct {
	MediaType string
	Title     string // the layer's TitleAnnotation; empty for none
	Data      []byte
}

// NewArtifact builds an artifact of type artifactType whose config blob
// (of that media type too) is config. It has no creation time or other
// varying field: the same inputs always give the same digest.
func NewArtifact(artifactType string, config []byte, layers ...ArtifactLayer) (v1.Image, error) {
	if artifactType == "" {
		return nil, errors.New("oci: an artifact needs a type")
	}
	mt := types.MediaType(artifactType)
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(config))
	if err != nil {
		return nil, fmt.Errorf("oci: artifact config: %w", err)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType,
		Config: v1.Descriptor{MediaType: mt, Digest: cfgDigest, Size: cfgSize}}
	a := &artifact{config: config, layers: map[v1.Hash]v1.Layer{}}
	for _, l := range layers {
		sl := static.NewLayer(l.Data, types.MediaType(l.MediaType))
		d, err := sl.Digest()
		if err != nil {
			return nil, fmt.Errorf("oci: artifact layer %s: %w", l.MediaType, err)
		}
		desc := v1.Descriptor{MediaType: types.MediaType(l.MediaType), Digest: d, Size: int64(len(l.Data))}
		if l.Title != "" {
			desc.Annotations = map[string]string{TitleAnnotation: l.Title}
		}
		m.Layers = append(m.Layers, desc)
		a.layers[d] = sl
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("oci: artifact manifest: %w", err)
	}
	return partial.CompressedToImage(a)
}

// artifact is the core go-containerregistry extends into a v1.Image: a raw
// manifest and config (ggcr's mutate would write a container config) and
// static layers.
type artifact struct {
	manifest, config []byte
	layers           map[v1.Hash]v1.Layer
}

func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("oci: artifact has no blob %s", h)
}

// Push writes img (an artifact or an image) under ref with the credentials
// and plain-HTTP rules of Pull, and returns the digest of its manifest. It
// does not touch the cache.
func (s *Store) Push(ctx context.Context, ref string, img v1.Image) (string, error) {
	r, err := parseRef(ref, s.insecure)
	if err != nil {
		return "", fmt.Errorf("oci: push: %w", err)
	}
	if _, ok := r.(name.Digest); ok {
		return "", fmt.Errorf("oci: push: %q is %w as a destination: it names a digest; push to a tag (the registry computes the digest)", ref, ErrBadReference)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("oci: push %s: %w", ref, err)
	}
	if err := remote.Write(r, img, s.remoteOptions(ctx)...); err != nil {
		return "", explain("push", ref, r, err)
	}
	return d.String(), nil
}

// RawConfig returns the config blob of a pulled image or artifact, checked
// against its digest.
func (s *Store) RawConfig(img *Image) ([]byte, error) {
	b, err := s.readBlob(img.ConfigDigest, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("oci: config of %s: %w", img.Ref, err)
	}
	return b, nil
}

// OpenBlob opens a cached blob (a layer of a pulled image or artifact) as
// stored. The cache checked its digest when it was downloaded; a caller that
// copies it out re-checks it, since the file may have changed since.
func (s *Store) OpenBlob(digest string) (io.ReadCloser, error) {
	if _, err := parseDigest(digest); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return nil, fmt.Errorf("oci: blob %s: %w", digest, err)
	}
	return f, nil
}
