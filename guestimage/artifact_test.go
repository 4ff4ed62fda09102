package guestimage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// installTest installs a made-up image into dir/NAME and returns it.
func installTest(t *testing.T, dir, name, kernel, initramfs string) Image {
	t.Helper()
	meta, err := Image{Release: "6.1.0-" + name, SHA256: sha256Hex([]byte(initramfs)), KernelSHA256: sha256Hex([]byte(kernel)),
		KernelKind: KernelVoidbox, KernelOrigin: "test " + name}.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	img, err := Install(filepath.Join(dir, name), meta, strings.NewReader(kernel), strings.NewReader(initramfs))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestInstallIsACacheDirectory(t *testing.T) {
	dir := t.TempDir()
	img := installTest(t, dir, "a", "kernel a", "initramfs a")
	if img.Kernel != filepath.Join(dir, "a", "kernel") || img.Release != "6.1.0-a" || img.KernelOrigin != "test a" {
		t.Fatalf("installed %+v", img)
	}
	// What Resolve reads from the local build's cache, in the same layout.
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvInitramfs, "")
	if got, err := ResolveIn(filepath.Join(dir, "a"), "", ""); err != nil || got != img {
		t.Fatalf("ResolveIn of the installed dir = %+v, %v; want %+v", got, err, img)
	}
	// Installing again keeps what is there; a damaged install is replaced.
	again := installTest(t, dir, "a", "kernel a", "initramfs a")
	if again != img {
		t.Fatalf("second install %+v", again)
	}
	os.Remove(img.Initramfs)
	if again := installTest(t, dir, "a", "kernel a", "initramfs a"); again != img {
		t.Fatalf("reinstall over a damaged dir: %+v", again)
	}
	if b, _ := os.ReadFile(img.Initramfs); string(b) != "initramfs a" {
		t.Fatalf("initramfs after the reinstall: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".a-*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestInstallRefusesWrongContent(t *testing.T) {
	dir := t.TempDir()
	meta, _ := Image{SHA256: sha256Hex([]byte("initramfs")), KernelSHA256: sha256Hex([]byte("kernel"))}.Metadata()
	_, err := Install(filepath.Join(dir, "x"), meta, strings.NewReader("kernel"), strings.NewReader("tampered"))
	if err == nil || !strings.Contains(err.Error(), "the guest initramfs has sha256 "+sha256Hex([]byte("tampered"))+", but the image's metadata says "+sha256Hex([]byte("initramfs"))) {
		t.Fatalf("install of a tampered initramfs: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a refused install left %v", left)
	}
}

func TestParseMetadata(t *testing.T) {
	good := Image{Release: "6.1.192", SHA256: sha256Hex([]byte("i")), KernelSHA256: sha256Hex([]byte("k")),
		KernelKind: KernelVoidbox, KernelOrigin: "linux-source", ConfigSHA256: sha256Hex([]byte("c"))}
	raw, err := good.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseMetadata(raw); err != nil || got != good {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	hex := sha256Hex(nil)
	for _, c := range []struct{ raw, want string }{
		{`[]`, "image.json) is not valid JSON"},
		{`{"initramfs_sha256": "` + hex + `"}`, `kernel_sha256 is ""; want 64 lower-case hex digits`},
		{`{"kernel_sha256": "` + hex + `", "initramfs_sha256": "` + strings.ToUpper(hex) + `"}`, `initramfs_sha256 is "` + strings.ToUpper(hex) + `"`},
		{`{"kernel_sha256": "` + hex + `", "initramfs_sha256": "` + hex + `", "kernel_config_sha256": "../x"}`, `kernel_config_sha256 is "../x"`},
	} {
		if _, err := ParseMetadata([]byte(c.raw)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseMetadata(%s) = %v; want %q", c.raw, err, c.want)
		}
	}
}

func TestReadArtifact(t *testing.T) {
	dir := t.TempDir()
	img := installTest(t, dir, "a", "kernel a", "initramfs a")
	a, err := ReadArtifact(img)
	if err != nil || string(a.Kernel) != "kernel a" || string(a.Initramfs) != "initramfs a" {
		t.Fatalf("ReadArtifact = %+v, %v", a, err)
	}
	if want, _ := os.ReadFile(filepath.Join(dir, "a", "image.json")); !bytes.Equal(a.Metadata, want) {
		t.Errorf("metadata %s, want the image.json %s", a.Metadata, want)
	}
	// An override has no recorded digest: it gets its own.
	override := Image{Kernel: img.Kernel, Initramfs: filepath.Join(dir, "other")}
	os.WriteFile(override.Initramfs, []byte("other"), 0o644)
	if a, err := ReadArtifact(override); err != nil || !strings.Contains(string(a.Metadata), sha256Hex([]byte("other"))) {
		t.Fatalf("ReadArtifact of overrides = %s, %v", a.Metadata, err)
	}
	if _, err := ReadArtifact(Image{Kernel: filepath.Join(dir, "none"), Initramfs: img.Initramfs}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadArtifact of a missing kernel: %v", err)
	}
}

// The resolution order: explicit file, its environment variable, the guest
// image reference (pulled only when a file is still missing), the local build.
func TestResolveWithOrder(t *testing.T) {
	dir := t.TempDir()
	local := installTest(t, dir, "local", "local kernel", "local initramfs")
	pulledImg := installTest(t, dir, "pulled", "pulled kernel", "pulled initramfs")
	env := installTest(t, dir, "env", "env kernel", "env initramfs")
	flag := installTest(t, dir, "flag", "flag kernel", "flag initramfs")
	calls := 0
	pulled := func() (Image, error) { calls++; return pulledImg, nil }
	cache := filepath.Join(dir, "local")
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvInitramfs, "")

	if got, err := ResolveWith(cache, "", "", nil); err != nil || got != local {
		t.Fatalf("no reference: %+v, %v; want the local build", got, err)
	}
	if got, err := ResolveWith(cache, "", "", pulled); err != nil || got != pulledImg || calls != 1 {
		t.Fatalf("a reference: %+v, %v (%d pulls); want the pulled image", got, err, calls)
	}
	t.Setenv(EnvKernel, env.Kernel)
	got, err := ResolveWith(cache, "", "", pulled)
	if err != nil || got.Kernel != env.Kernel || got.Initramfs != pulledImg.Initramfs || got.SHA256 != pulledImg.SHA256 ||
		got.Release != "" || got.KernelSHA256 != "" || got.KernelOrigin != "" {
		t.Fatalf("$%s and a reference: %+v, %v; want the kernel from the environment (no metadata of the pulled one), the initramfs pulled", EnvKernel, got, err)
	}
	got, err = ResolveWith(cache, "", flag.Initramfs, pulled)
	if err != nil || got.Kernel != env.Kernel || got.Initramfs != flag.Initramfs || got.SHA256 != "" || calls != 2 {
		t.Fatalf("$%s, --initramfs and a reference: %+v, %v (%d pulls); want no pull", EnvKernel, got, err, calls)
	}
	t.Setenv(EnvKernel, "")
	got, err = ResolveWith(cache, flag.Kernel, flag.Initramfs, pulled)
	if err != nil || got.Kernel != flag.Kernel || got.Initramfs != flag.Initramfs || calls != 2 {
		t.Fatalf("both files given: %+v, %v (%d pulls); want them and no pull", got, err, calls)
	}
	boom := errors.New("registry says no")
	if _, err := ResolveWith(cache, "", "", func() (Image, error) { return Image{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed pull: %v", err)
	}
	if _, err := ResolveWith(cache, filepath.Join(dir, "missing"), "", pulled); err == nil || err.Error() != "guest image file "+filepath.Join(dir, "missing")+" (from --kernel) does not exist" {
		t.Fatalf("a missing --kernel with a reference: %v", err)
	}
}

// FuzzParseMetadata: image.json from a registry is untrusted. What parses
// has well-formed digests (they become part of file checks) and survives a
// round trip through Metadata.
func FuzzParseMetadata(f *testing.F) {
	good, _ := Image{Release: "6.1.192", SHA256: sha256Hex([]byte("i")), KernelSHA256: sha256Hex([]byte("k"))}.Metadata()
	f.Add(good)
	f.Add([]byte(`{"kernel_sha256": 1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		img, err := ParseMetadata(raw)
		if err != nil {
			return
		}
		if !isSHA256Hex(img.SHA256) || !isSHA256Hex(img.KernelSHA256) {
			t.Fatalf("accepted digests %q, %q", img.SHA256, img.KernelSHA256)
		}
		again, err := img.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseMetadata(again); err != nil || back != img {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, img)
		}
	})
}
