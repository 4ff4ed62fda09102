// Package guestimage builds and locates the guest image: a kernel (by
// default a microVM kernel compiled from Debian's linux-source with the
// config fragment in kconfig/, or Debian's cloud kernel with the few modules
// the guest needs) plus an initramfs holding the guest agent as /init and
// busybox. It owns the kernel build and its cache, the deterministic cpio
// writer, the image cache under ~/.voidbox/guest and the kernel/initramfs
// resolution order (settings, environment, a guest image reference (ResolveWith), cache).
package guestimage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Environment variables that override the cached guest image.
const (
	EnvKernel    = "VOIDBOX_KERNEL"
	EnvInitramfs = "VOIDBOX_INITRAMFS"
)

// File names inside the cache directory.
const (
	kernelFile    = "kernel"
	initramfsFile = "initramfs.cpio"
	manifestFile  = "image.json"
)

// BuildCommand is the command that populates the cache; errors quote it.
const BuildCommand = "voidbox guest build"

// Image is a kernel and initramfs pair ready to boot.
type Image struct {
	Kernel    string
	Initramfs string
	// Release is the kernel release (uname -r), empty when unknown (overrides).
	Release string
	// SHA256 is the initramfs digest; two builds from the same inputs agree on it.
	SHA256 string
	// KernelSHA256 is the kernel image digest, empty when unknown.
	KernelSHA256 string
	// KernelKind is KernelVoidbox or KernelDebian, empty for overrides.
	KernelKind string
	// KernelOrigin says where the kernel came from (package, version, config).
	KernelOrigin string
	// ConfigSHA256 is the digest of the kernel config fragment a built kernel
	// was configured with, empty for Debian's kernel.
	ConfigSHA256 string
}

type manifest struct {
	Release      string `json:"release"`
	SHA256       string `json:"initramfs_sha256"`
	KernelSHA256 string `json:"kernel_sha256"`
	KernelKind   string `json:"kernel_kind"`
	KernelOrigin string `json:"kernel_origin"`
	ConfigSHA256 string `json:"kernel_config_sha256,omitempty"`
}

func (i Image) manifest() manifest {
	return manifest{Release: i.Release, SHA256: i.SHA256, KernelSHA256: i.KernelSHA256,
		KernelKind: i.KernelKind, KernelOrigin: i.KernelOrigin, ConfigSHA256: i.ConfigSHA256}
}

// ErrNotBuilt is wrapped by Resolve's error when no image is configured and
// the cache is empty.
var ErrNotBuilt = errors.New("guest image not built")

// DefaultCacheDir is ~/.voidbox/guest.
func DefaultCacheDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate guest image cache: %w", err)
	}
	return filepath.Join(home, ".voidbox", "guest"), nil
}

// Resolve finds the kernel and initramfs to boot. Each file is taken from, in
// order: the explicit override (box or sandbox settings), the VOIDBOX_KERNEL /
// VOIDBOX_INITRAMFS environment variable, then the cache Build fills.
func Resolve(kernelOverride, initramfsOverride string) (Image, error) {
	dir, err := DefaultCacheDir()
	if err != nil {
		return Image{}, err
	}
	return ResolveIn(dir, kernelOverride, initramfsOverride)
}

// ResolveIn is Resolve with an explicit cache directory.
func ResolveIn(cacheDir, kernelOverride, initramfsOverride string) (Image, error) {
	img := Image{Kernel: kernelOverride, Initramfs: initramfsOverride}
	kernelFrom, initrdFrom := "--kernel", "--initramfs"
	if img.Kernel == "" {
		img.Kernel, kernelFrom = os.Getenv(EnvKernel), EnvKernel
	}
	if img.Initramfs == "" {
		img.Initramfs, initrdFrom = os.Getenv(EnvInitramfs), EnvInitramfs
	}
	if img.Kernel == "" || img.Initramfs == "" {
		cached, err := readCache(cacheDir)
		if err != nil {
			return Image{}, err
		}
		if img.Kernel == "" {
			img.Kernel, kernelFrom = cached.Kernel, "cache"
			img.Release, img.KernelSHA256 = cached.Release, cached.KernelSHA256
			img.KernelKind, img.KernelOrigin, img.ConfigSHA256 = cached.KernelKind, cached.KernelOrigin, cached.ConfigSHA256
		}
		if img.Initramfs == "" {
			img.Initramfs, initrdFrom = cached.Initramfs, "cache"
			img.SHA256 = cached.SHA256
		}
	}
	if err := checkFile(img.Kernel, kernelFrom); err != nil {
		return Image{}, err
	}
	if err := checkFile(img.Initramfs, initrdFrom); err != nil {
		return Image{}, err
	}
	return img, nil
}

func readCache(dir string) (Image, error) {
	raw, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("guest image not found in %s: build it with %q: %w", dir, BuildCommand, ErrNotBuilt)
	}
	if err != nil {
		return Image{}, fmt.Errorf("read guest image manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Image{}, fmt.Errorf("guest image manifest %s is corrupt (%v): rebuild it with %q", filepath.Join(dir, manifestFile), err, BuildCommand)
	}
	return Image{
		Kernel: filepath.Join(dir, kernelFile), Initramfs: filepath.Join(dir, initramfsFile),
		Release: m.Release, SHA256: m.SHA256, KernelSHA256: m.KernelSHA256,
		KernelKind: m.KernelKind, KernelOrigin: m.KernelOrigin, ConfigSHA256: m.ConfigSHA256,
	}, nil
}

func checkFile(p, from string) error {
	st, err := os.Stat(p)
	if err != nil {
		if from == "cache" {
			return fmt.Errorf("guest image file %s is missing: rebuild it with %q: %w", p, BuildCommand, ErrNotBuilt)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("guest image file %s (from %s) does not exist", p, from)
		}
		return fmt.Errorf("guest image file %s (from %s): %w", p, from, errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("guest image file %s (from %s) is not a regular file", p, from)
	}
	return nil
}
