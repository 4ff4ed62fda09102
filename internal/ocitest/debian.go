package ocitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DebianSuite and DebianMirror are what DebianPythonRootfs bootstraps.
const (
	DebianSuite  = "bookworm"
	DebianMirror = "http://deb.debian.org/debian"
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
	if os.Geteuid() != 0 {
		t.Skip("building the Debian python image needs root (debootstrap)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("building the Debian python image needs debootstrap (apt-get install debootstrap; scripts/setup.sh installs it)")
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
	run := func(name string, args ...string) {
		t.Helper()
		if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, tail(b))
		}
	}
	run("debootstrap", "--variant=minbase", "--include=python3-minimal", DebianSuite, root, DebianMirror)
	// What a container image leaves out: package caches, documentation.
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"} {
		if err := os.RemoveAll(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(work, "rootfs.tar")
	run("tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", tmp, ".")
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
