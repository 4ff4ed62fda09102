package ocitest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/voidbox/voidbox/internal/debootstrap"
)

// DebianSuite and DebianMirror are what DebianPythonRootfs bootstraps.
const (
	DebianSuite  = debootstrap.DefaultSuite
	DebianMirror = debootstrap.DefaultMirror
)

var debianMu sync.Mutex

// DebianPythonRootfs returns a tarball of a Debian minbase root file system with
// python3 (python3-minimal), made by debootstrap the first time and cached under
// ~/.cache/voidbox/debootstrap (about 45 s and 60 MB of downloads here). It needs
// root and debootstrap; without them the test is skipped, saying which.
func DebianPythonRootfs(t testing.TB) string {
	t.Helper()
	debianMu.Lock()
	defer debianMu.Unlock()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cache, "voidbox", "debootstrap", DebianSuite+"-minbase-python3.tar")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if err := debootstrap.Check(); err != nil {
		t.Skipf("building the Debian python image: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := debootstrap.Build(context.Background(), root, debootstrap.Options{Include: []string{"python3-minimal"}}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(work, "rootfs.tar")
	if b, err := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", tmp, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar %s: %v\n%s", root, err, tail(b))
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// DebianPython is DebianPythonRootfs as a one-layer image whose command is python3.
func DebianPython(t testing.TB) v1.Image {
	t.Helper()
	layer, err := tarball.LayerFromFile(DebianPythonRootfs(t))
	if err != nil {
		t.Fatal(err)
	}
	return NewImage(t, v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		Cmd: []string{"python3"},
	}, "amd64", layer)
}

func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}
