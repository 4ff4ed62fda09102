// Package ociartifact moves the guest image (kernel + initramfs) through OCI
// registries as an artifact, so that a machine can run stages without
// building the image itself.
//
// The artifact is one OCI image manifest with artifactType
// guestimage.ArtifactType; its config blob (of that media type too) is the
// image's image.json (release, kernel kind and origin, kernel config digest,
// the two files' sha256s), and its two layers are the kernel
// (guestimage.KernelMediaType) and the initramfs
// (guestimage.InitramfsMediaType), uncompressed (a kernel and a cpio gain
// little from gzip, and an uncompressed layer's digest is the file's own
// sha256, the one image.json states), each titled with its file name. It has
// no timestamps: the same image always has the same digest.
//
// A pull goes through the OCI cache (package oci: credentials, plain HTTP
// only for loopback and --insecure-registry registries, offline reuse of a
// cached digest or of the digest a tag last resolved to), then the image is
// installed as files under ~/.voidbox/guest-images/HEX/, HEX the manifest
// digest, in the layout of the local build's cache (kernel,
// initramfs.cpio, image.json), which QEMU and Cloud Hypervisor open. Each
// layer's digest must be the sha256 image.json gives for its file, and the
// files are hashed again as they are installed, so a blob changed in the
// cache after its download is refused too.
package ociartifact

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/oci"
)

// ErrNotGuestImage is wrapped by Pull's error when the reference names
// something other than a voidbox guest image.
var ErrNotGuestImage = errors.New("not a voidbox guest image")

// DefaultDir is ~/.voidbox/guest-images, where pulled images are installed.
func DefaultDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate the pulled guest images: %w", err)
	}
	return filepath.Join(home, ".voidbox", "guest-images"), nil
}

// New builds the artifact of a guest image's content.
func New(a guestimage.Artifact) (v1.Image, error) {
	return oci.NewArtifact(guestimage.ArtifactType, a.Metadata,
		oci.ArtifactLayer{MediaType: guestimage.KernelMediaType, Title: guestimage.KernelTitle, Data: a.Kernel},
		oci.ArtifactLayer{MediaType: guestimage.InitramfsMediaType, Title: guestimage.InitramfsTitle, Data: a.Initramfs})
}

// Push pushes img (its files checked against the digests it knows) under
// ref, a tag, and returns the artifact's digest.
func Push(ctx context.Context, store *oci.Store, ref string, img guestimage.Image) (string, error) {
	a, err := guestimage.ReadArtifact(img)
	if err != nil {
		return "", err
	}
	art, err := New(a)
	if err != nil {
		return "", err
	}
	return store.Push(ctx, ref, art)
}

// Pull makes the guest image ref available under dir (DefaultDir in use)
// and returns it, with the artifact it came from (Ref, Digest; Warning when
// the registry could not be asked and a tag's last digest was used).
// progress, if set, gets the layers' download progress.
func Pull(ctx context.Context, store *oci.Store, ref, dir string, progress func(oci.Progress)) (guestimage.Image, *oci.Image, error) {
	art, err := store.Pull(ctx, ref, oci.PullOptions{ArtifactType: guestimage.ArtifactType, Progress: progress})
	if errors.Is(err, oci.ErrWrongType) {
		return guestimage.Image{}, nil, fmt.Errorf("guest image %s is %w (an OCI artifact of type %s, as 'voidbox guest push' makes): %w",
			ref, ErrNotGuestImage, guestimage.ArtifactType, err)
	}
	if err != nil {
		return guestimage.Image{}, nil, err
	}
	img, err := install(store, art, dir)
	if err != nil {
		return guestimage.Image{}, nil, fmt.Errorf("guest image %s (%s): %w", ref, art.Digest, err)
	}
	return img, art, nil
}

// install checks the artifact's layers against its image.json and installs
// it, unless that was done before.
func install(store *oci.Store, art *oci.Image, dir string) (guestimage.Image, error) {
	meta, err := store.RawConfig(art)
	if err != nil {
		return guestimage.Image{}, err
	}
	want, err := guestimage.ParseMetadata(meta)
	if err != nil {
		return guestimage.Image{}, err
	}
	kernel, err := layer(art, guestimage.KernelMediaType, "kernel_sha256", want.KernelSHA256)
	if err != nil {
		return guestimage.Image{}, err
	}
	initrd, err := layer(art, guestimage.InitramfsMediaType, "initramfs_sha256", want.SHA256)
	if err != nil {
		return guestimage.Image{}, err
	}
	if len(art.Layers) != 2 {
		return guestimage.Image{}, fmt.Errorf("%d layers; a guest image has exactly two, %s and %s", len(art.Layers), guestimage.KernelMediaType, guestimage.InitramfsMediaType)
	}
	target := filepath.Join(dir, strings.TrimPrefix(art.Digest, "sha256:"))
	if img, err := guestimage.Installed(target); err == nil {
		return img, nil
	}
	kr, err := store.OpenBlob(kernel)
	if err != nil {
		return guestimage.Image{}, err
	}
	defer kr.Close()
	ir, err := store.OpenBlob(initrd)
	if err != nil {
		return guestimage.Image{}, err
	}
	defer ir.Close()
	return guestimage.Install(target, meta, kr, ir)
}

// layer is the digest of art's one layer of media type mt, which must be
// the sha256 image.json's field gives.
func layer(art *oci.Image, mt, field, sha string) (string, error) {
	var found []oci.LayerInfo
	for _, l := range art.Layers {
		if l.MediaType == mt {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("missing layer: it has no layer of media type %s", mt)
	case 1:
	default:
		return "", fmt.Errorf("%d layers of media type %s; a guest image has exactly one", len(found), mt)
	}
	if found[0].Digest != "sha256:"+sha {
		return "", fmt.Errorf("digest mismatch: its %s layer is %s, but its image.json says %s %s", mt, found[0].Digest, field, sha)
	}
	return found[0].Digest, nil
}
