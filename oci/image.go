package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platform is the only platform voidbox runs: its guests are x86-64 Linux.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// DefaultPath is the PATH a stage gets when the image sets none (Docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is a pulled image whose blobs are all in the cache.
type Image struct {
	Ref          string // the reference, fully qualified (index.docker.io/library/busybox:latest)
	Digest       string // the image manifest's digest
	Index        string // the multi-platform index it was picked from, if any
	ConfigDigest string
	Config       Config
	Layers       []LayerInfo // lowest first
	Size         int64       // compressed config and layers
	FromCache    bool        // no blob was downloaded
	// Warning is set when the image was not resolved against the registry
	// as asked (the registry was unreachable and the tag's last digest was used).
	Warning string
	// ArtifactType is "" for a container image, else the type of the
	// artifact (see artifact.go), whose Config is then empty and whose
	// layers are opaque blobs.
	ArtifactType string
}

// LayerInfo describes one layer blob.
type LayerInfo struct {
	Digest    string // of the compressed blob
	DiffID    string // of the uncompressed tar; "" for an artifact's blob
	MediaType string
	Size      int64
}

// Config is the part of the image config a stage needs.
type Config struct {
	Env        []string // KEY=VALUE
	WorkingDir string
	User       string // "", "name", "uid", "name:group", "uid:gid"
	Entrypoint []string
	Cmd        []string
}

// Environ returns the stage environment: the image's Env (PATH defaulting to
// DefaultPath) overridden by env, the box's own variables, which win. Image
// variables keep their order; new ones follow, sorted.
func (c Config) Environ(env map[string]string) []string {
	var keys []string
	vals := map[string]string{}
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	if _, ok := vals["PATH"]; !ok {
		keys = append(keys, "PATH")
		vals["PATH"] = DefaultPath
	}
	var extra []string
	for k, v := range env {
		if _, ok := vals[k]; !ok {
			extra = append(extra, k)
		}
		vals[k] = v
	}
	sort.Strings(extra)
	out := make([]string, 0, len(keys)+len(extra))
	for _, k := range append(keys, extra...) {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// layerTypes are the layer media types the unpacker reads; foreign
// (Windows) layers and encrypted ones are not.
var layerTypes = []types.MediaType{types.DockerLayer, types.DockerUncompressedLayer, types.OCILayer,
	types.OCILayerZStd, types.OCIUncompressedLayer}

// imageFrom checks a manifest and its config (both raw JSON, already
// verified against their digests) and describes the image or artifact.
func imageFrom(ref, digest string, rawManifest, rawConfig []byte) (*Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	if t := artifactTypeOf(m); t != "" {
		return artifactFrom(ref, digest, t, m)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("config %s of image %s: %w", m.Config.Digest, digest, err)
	}
	if cf.OS != "" && (cf.OS != Platform.OS || cf.Architecture != Platform.Architecture) {
		return nil, fmt.Errorf("image %s is for %s/%s; voidbox runs %s/%s images", digest, cf.OS, cf.Architecture,
			Platform.OS, Platform.Architecture)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff IDs in its config", digest, len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	img := &Image{Ref: ref, Digest: digest, ConfigDigest: m.Config.Digest.String(), Size: m.Config.Size,
		Config: Config{Env: cf.Config.Env, WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd}}
	for i, l := range m.Layers {
		if !slices.Contains(layerTypes, l.MediaType) {
			return nil, fmt.Errorf("image %s: layer %s has media type %q; supported: %v", digest, l.Digest, l.MediaType, layerTypes)
		}
		if err := img.addLayer(l, cf.RootFS.DiffIDs[i].String()); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// artifactFrom describes an artifact: its config and layers are whatever its
// type says, so only their descriptors are checked.
func artifactFrom(ref, digest, artifactType string, m *v1.Manifest) (*Image, error) {
	if m.Config.Size < 0 {
		return nil, fmt.Errorf("artifact %s: its config has a negative size", digest)
	}
	img := &Image{Ref: ref, Digest: digest, ArtifactType: artifactType, ConfigDigest: m.Config.Digest.String(), Size: m.Config.Size}
	for _, l := range m.Layers {
		if err := img.addLayer(l, ""); err != nil {
			return nil, err
		}
	}
	return img, nil
}

func (img *Image) addLayer(l v1.Descriptor, diffID string) error {
	if l.Size < 0 {
		return fmt.Errorf("image %s: layer %s has a negative size", img.Digest, l.Digest)
	}
	img.Layers = append(img.Layers, LayerInfo{Digest: l.Digest.String(), DiffID: diffID, MediaType: string(l.MediaType), Size: l.Size})
	img.Size += l.Size
	return nil
}

// errIncomplete means a blob of the image is not cached.
var errIncomplete = errors.New("not completely cached")

// load describes a cached image from its blobs; errIncomplete if any is missing.
func (s *Store) load(ref, digest string) (*Image, error) {
	rawManifest, err := s.readBlob(digest, maxManifestSize)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("cached manifest %s: %w", digest, err)
	}
	rawConfig, err := s.readBlob(m.Config.Digest.String(), maxConfigSize)
	if err != nil {
		return nil, err
	}
	img, err := imageFrom(ref, digest, rawManifest, rawConfig)
	if err != nil {
		return nil, err
	}
	for _, l := range img.Layers {
		fi, err := os.Stat(s.blobPath(l.Digest))
		if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() != l.Size) {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, errIncomplete)
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	img.FromCache = true
	return img, nil
}

// loadDigest is load for a digest that may name a cached multi-platform
// index: the index's linux/amd64 image is then loaded.
func (s *Store) loadDigest(ref, digest string) (*Image, error) {
	raw, err := s.readBlob(digest, maxManifestSize)
	if err != nil {
		return nil, err
	}
	var probe struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.Manifests == nil {
		return s.load(ref, digest)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("cached index %s: %w", digest, err)
	}
	child, err := pickPlatform(im)
	if err != nil {
		return nil, fmt.Errorf("cached index %s: %w", digest, err)
	}
	img, err := s.load(ref, child.Digest.String())
	if err != nil {
		return nil, err
	}
	img.Index = digest
	return img, nil
}
