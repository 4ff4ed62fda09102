package guestimage

// The guest image travels through registries as an OCI artifact (package
// guestimage/ociartifact does the OCI side): its config blob is image.json,
// and its two layers are the kernel and the initramfs, byte for byte. This
// file is the guest image's side of that: reading an image's content for a
// push, installing a pulled one as a cache directory Resolve can read, and
// the resolution order with a guest image reference in it.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Media types of the guest image artifact.
const (
	// ArtifactType is the artifact's type and its config's media type; the
	// config is image.json.
	ArtifactType       = "application/vnd.voidbox.guest.v1+json"
	KernelMediaType    = "application/vnd.voidbox.guest.kernel"
	InitramfsMediaType = "application/vnd.voidbox.guest.initramfs"
)

// EnvGuestImage names a guest image reference, the default for --guest-image.
const EnvGuestImage = "VOIDBOX_GUEST_IMAGE"

// Layer titles: the file names in a cache directory.
const (
	KernelTitle    = kernelFile
	InitramfsTitle = initramfsFile
)

// Artifact is a guest image's content as its OCI artifact carries it.
type Artifact struct {
	Metadata  []byte // image.json
	Kernel    []byte
	Initramfs []byte
}

// ReadArtifact reads img's files and describes them in image.json. A file
// whose digest img knows (a built image) must still have it; one it does not
// (an override) gets its digest computed.
func ReadArtifact(img Image) (Artifact, error) {
	var a Artifact
	var err error
	if a.Kernel, img.KernelSHA256, err = readChecked(img.Kernel, "kernel", img.KernelSHA256); err != nil {
		return Artifact{}, err
	}
	if a.Initramfs, img.SHA256, err = readChecked(img.Initramfs, "initramfs", img.SHA256); err != nil {
		return Artifact{}, err
	}
	if a.Metadata, err = img.Metadata(); err != nil {
		return Artifact{}, err
	}
	return a, nil
}

func readChecked(path, what, want string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read the guest %s: %w", what, err)
	}
	got := sha256Hex(b)
	if want != "" && got != want {
		return nil, "", fmt.Errorf("guest %s %s has sha256 %s, but its image.json says %s: rebuild it with %q", what, path, got, want, BuildCommand)
	}
	return b, got, nil
}

// Metadata is img's image.json, as Build writes it.
func (i Image) Metadata() ([]byte, error) {
	b, err := json.MarshalIndent(i.manifest(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("guest image metadata: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseMetadata reads an image.json that came from elsewhere (a registry):
// both sha256s must be there, since they are what the files are checked
// against. The returned Image has no file paths.
func ParseMetadata(raw []byte) (Image, error) {
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Image{}, fmt.Errorf("guest image metadata (image.json) is not valid JSON: %w", err)
	}
	for _, f := range []struct{ field, value string }{{"kernel_sha256", m.KernelSHA256}, {"initramfs_sha256", m.SHA256}} {
		if !isSHA256Hex(f.value) {
			return Image{}, fmt.Errorf("guest image metadata (image.json): %s is %q; want 64 lower-case hex digits", f.field, f.value)
		}
	}
	if m.ConfigSHA256 != "" && !isSHA256Hex(m.ConfigSHA256) {
		return Image{}, fmt.Errorf("guest image metadata (image.json): kernel_config_sha256 is %q; want 64 lower-case hex digits or nothing", m.ConfigSHA256)
	}
	return Image{Release: m.Release, SHA256: m.SHA256, KernelSHA256: m.KernelSHA256,
		KernelKind: m.KernelKind, KernelOrigin: m.KernelOrigin, ConfigSHA256: m.ConfigSHA256}, nil
}

func isSHA256Hex(s string) bool {
	return len(s) == sha256.Size*2 && strings.Trim(s, "0123456789abcdef") == ""
}

// Install makes dir a cache directory holding the image metadata
// describes, with the kernel and initramfs read from the two readers and
// checked against metadata's sha256s. It is written next to dir and renamed
// into place, so dir is complete or absent; when another process installed
// it first, that copy is used.
func Install(dir string, metadata []byte, kernel, initramfs io.Reader) (Image, error) {
	want, err := ParseMetadata(metadata)
	if err != nil {
		return Image{}, err
	}
	if img, err := Installed(dir); err == nil {
		return img, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Image{}, fmt.Errorf("install guest image: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+"-")
	if err != nil {
		return Image{}, fmt.Errorf("install guest image: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := writeChecked(filepath.Join(tmp, kernelFile), "kernel", kernel, want.KernelSHA256); err != nil {
		return Image{}, err
	}
	if err := writeChecked(filepath.Join(tmp, initramfsFile), "initramfs", initramfs, want.SHA256); err != nil {
		return Image{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, manifestFile), metadata, 0o644); err != nil {
		return Image{}, fmt.Errorf("install guest image: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Image{}, fmt.Errorf("install guest image: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if img, ierr := Installed(dir); ierr == nil {
			return img, nil // installed by another process meanwhile
		}
		// What is there was damaged after its install (installs are renamed
		// into place whole): replace it.
		if err := os.RemoveAll(dir); err != nil {
			return Image{}, fmt.Errorf("install guest image: replace the damaged %s: %w", dir, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return Image{}, fmt.Errorf("install guest image: %w", err)
		}
	}
	return Installed(dir)
}

func writeChecked(path, what string, r io.Reader, want string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("install guest image: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("install guest image: write the %s: %w", what, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("the guest %s has sha256 %s, but the image's metadata says %s (a corrupt or tampered blob)", what, got, want)
	}
	return nil
}

// Installed is the image in cache directory dir, with both files present.
func Installed(dir string) (Image, error) {
	img, err := readCache(dir)
	if err != nil {
		return Image{}, err
	}
	for _, p := range []string{img.Kernel, img.Initramfs} {
		if err := checkFile(p, "cache"); err != nil {
			return Image{}, err
		}
	}
	return img, nil
}

// ResolveWith is ResolveIn with a guest image between the environment and
// the cache: each file comes from its override, else its environment
// variable, else pulled() (a guest image reference, fetched only when a file
// is still missing), else cacheDir. pulled nil means no guest image was named.
func ResolveWith(cacheDir, kernelOverride, initramfsOverride string, pulled func() (Image, error)) (Image, error) {
	kernel, kernelFrom := pick(kernelOverride, "--kernel", EnvKernel)
	initrd, initrdFrom := pick(initramfsOverride, "--initramfs", EnvInitramfs)
	if pulled == nil || (kernel != "" && initrd != "") {
		return ResolveIn(cacheDir, kernelOverride, initramfsOverride)
	}
	img, err := pulled()
	if err != nil {
		return Image{}, err
	}
	if kernel != "" {
		if err := checkFile(kernel, kernelFrom); err != nil {
			return Image{}, err
		}
		img.Kernel, img.Release, img.KernelSHA256, img.KernelKind, img.KernelOrigin, img.ConfigSHA256 = kernel, "", "", "", "", ""
	}
	if initrd != "" {
		if err := checkFile(initrd, initrdFrom); err != nil {
			return Image{}, err
		}
		img.Initramfs, img.SHA256 = initrd, ""
	}
	return img, nil
}

// pick is a file's override, else its environment variable, and which.
func pick(override, flag, env string) (string, string) {
	if override != "" {
		return override, flag
	}
	return os.Getenv(env), env
}
