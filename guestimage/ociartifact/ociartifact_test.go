package ociartifact

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/guestimage"
	ot "github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/oci"
)

// testImage is a guest image of made-up files in a directory of its own.
func testImage(t *testing.T) guestimage.Image {
	t.Helper()
	dir := t.TempDir()
	img := guestimage.Image{Kernel: filepath.Join(dir, "vmlinux"), Initramfs: filepath.Join(dir, "initrd"),
		Release: "6.1.0-test", KernelKind: guestimage.KernelVoidbox, KernelOrigin: "a test",
		ConfigSHA256: strings.Repeat("ab", 32)}
	if err := os.WriteFile(img.Kernel, []byte("\x7fELF a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img.Initramfs, []byte("070701 an initramfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

func openStore(t *testing.T) *oci.Store {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	s, err := oci.Open(oci.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ctx := context.Background()
	src := testImage(t)
	digest, err := Push(ctx, openStore(t), reg.Ref("voidbox/guest:v1"), src)
	if err != nil {
		t.Fatal(err)
	}
	s, dir := openStore(t), t.TempDir()
	img, art, err := Pull(ctx, s, reg.Ref("voidbox/guest:v1"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	if art.Digest != digest || img.Kernel != filepath.Join(dir, hex, "kernel") || img.Initramfs != filepath.Join(dir, hex, "initramfs.cpio") {
		t.Fatalf("pulled %+v from %+v; want files under %s", img, art, filepath.Join(dir, hex))
	}
	for _, f := range [][2]string{{src.Kernel, img.Kernel}, {src.Initramfs, img.Initramfs}} {
		want, _ := os.ReadFile(f[0])
		got, err := os.ReadFile(f[1])
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s holds %q (%v), want %q", f[1], got, err, want)
		}
	}
	if img.Release != src.Release || img.KernelKind != src.KernelKind || img.KernelOrigin != src.KernelOrigin ||
		img.ConfigSHA256 != src.ConfigSHA256 || len(img.SHA256) != 64 || len(img.KernelSHA256) != 64 {
		t.Errorf("metadata %+v, want that of %+v with both sha256s", img, src)
	}
	// The manifest is the documented layout.
	a, err := guestimage.ReadArtifact(src)
	if err != nil {
		t.Fatal(err)
	}
	built, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := built.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != guestimage.ArtifactType || m.Config.MediaType != guestimage.ArtifactType || len(m.Layers) != 2 ||
		m.Layers[0].MediaType != guestimage.KernelMediaType || m.Layers[0].Annotations[oci.TitleAnnotation] != "kernel" ||
		m.Layers[1].MediaType != guestimage.InitramfsMediaType || m.Layers[1].Annotations[oci.TitleAnnotation] != "initramfs.cpio" ||
		m.Layers[0].Digest.Hex != img.KernelSHA256 || m.Layers[1].Digest.Hex != img.SHA256 {
		t.Errorf("manifest %+v", m)
	}
	if d, _ := built.Digest(); d.String() != digest {
		t.Errorf("the same image built again has digest %s, pushed %s", d, digest)
	}
	// With the registry gone: by digest from the cache, by tag with a warning.
	reg.Server.Close()
	if again, _, err := Pull(ctx, s, reg.Ref("voidbox/guest@"+digest), dir, nil); err != nil || again.Kernel != img.Kernel {
		t.Fatalf("offline pull by digest: %+v, %v", again, err)
	}
	if _, art, err := Pull(ctx, s, reg.Ref("voidbox/guest:v1"), dir, nil); err != nil || !strings.Contains(art.Warning, "unreachable") {
		t.Fatalf("offline pull by tag: %+v, %v; want the cached digest with a warning", art, err)
	}
}

func TestContainerImageIsRefused(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", "hi\n")), false)))
	_, _, err := Pull(context.Background(), openStore(t), reg.Ref("app:v1"), t.TempDir(), nil)
	if !errors.Is(err, ErrNotGuestImage) || !errors.Is(err, oci.ErrWrongType) ||
		!strings.Contains(err.Error(), "guest image "+reg.Ref("app:v1")+" is not a voidbox guest image") ||
		!strings.Contains(err.Error(), "it is a container image") {
		t.Fatalf("pull of a container image as the guest image: %v", err)
	}
}

// pushRaw pushes an artifact of the guest image's type with the given
// metadata and layers, as a broken or hostile publisher could.
func pushRaw(t *testing.T, ref string, meta []byte, layers ...oci.ArtifactLayer) {
	t.Helper()
	a, err := oci.NewArtifact(guestimage.ArtifactType, meta, layers...)
	if err != nil {
		t.Fatal(err)
	}
	ot.Push(t, ref, a)
}

func TestMalformedArtifactsAreRefused(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	a, err := guestimage.ReadArtifact(testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	kernel := oci.ArtifactLayer{MediaType: guestimage.KernelMediaType, Data: a.Kernel}
	initrd := oci.ArtifactLayer{MediaType: guestimage.InitramfsMediaType, Data: a.Initramfs}
	other := oci.ArtifactLayer{MediaType: guestimage.InitramfsMediaType, Data: []byte("another initramfs")}
	cases := []struct {
		name   string
		meta   []byte
		layers []oci.ArtifactLayer
		want   string
	}{
		{"no-initramfs", a.Metadata, []oci.ArtifactLayer{kernel}, "missing layer: it has no layer of media type " + guestimage.InitramfsMediaType},
		{"two-initramfs", a.Metadata, []oci.ArtifactLayer{kernel, initrd, other}, "2 layers of media type " + guestimage.InitramfsMediaType},
		{"extra-layer", a.Metadata, []oci.ArtifactLayer{kernel, initrd, {MediaType: "application/x-extra", Data: []byte("x")}}, "3 layers; a guest image has exactly two"},
		{"mismatch", a.Metadata, []oci.ArtifactLayer{kernel, other}, "digest mismatch: its " + guestimage.InitramfsMediaType + " layer is sha256:"},
		{"bad-metadata", []byte(`{"kernel_sha256": "x"}`), []oci.ArtifactLayer{kernel, initrd}, `kernel_sha256 is "x"; want 64 lower-case hex digits`},
		{"not-json", []byte(`kernel`), []oci.ArtifactLayer{kernel, initrd}, "image.json) is not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := reg.Ref("guest/" + c.name + ":v1")
			pushRaw(t, ref, c.meta, c.layers...)
			dir := t.TempDir()
			_, _, err := Pull(context.Background(), openStore(t), ref, dir, nil)
			if err == nil || !strings.Contains(err.Error(), "guest image "+ref+" (sha256:") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("pull: %v; want %q", err, c.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("a refused image left %v in %s", left, dir)
			}
		})
	}
}

// A blob changed in the OCI cache after its download is caught when the
// image is installed from it.
func TestTamperedCachedBlobIsRefused(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ctx := context.Background()
	s := openStore(t)
	digest, err := Push(ctx, s, reg.Ref("voidbox/guest:v1"), testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	_, art, err := Pull(ctx, s, reg.Ref("voidbox/guest:v1"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var kernel string
	for _, l := range art.Layers {
		if l.MediaType == guestimage.KernelMediaType {
			kernel = strings.TrimPrefix(l.Digest, "sha256:")
		}
	}
	blob := filepath.Join(s.Dir(), "blobs", "sha256", kernel)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff // same size: the cache still counts it as present
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, _, err = Pull(ctx, s, reg.Ref("voidbox/guest@"+digest), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "the guest kernel has sha256 ") || !strings.Contains(err.Error(), "but the image's metadata says") {
		t.Fatalf("install from a tampered blob: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the tampered image left %v in %s", left, dir)
	}
}

func TestPushRefusesAChangedFile(t *testing.T) {
	img := testImage(t)
	img.SHA256 = strings.Repeat("0", 64) // what a build recorded; the file no longer has it
	_, err := Push(context.Background(), openStore(t), "127.0.0.1:1/guest:v1", img)
	if err == nil || !strings.Contains(err.Error(), "guest initramfs "+img.Initramfs+" has sha256 ") || !strings.Contains(err.Error(), "rebuild it with") {
		t.Fatalf("push of a changed initramfs: %v", err)
	}
}
