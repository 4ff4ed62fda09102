package oci

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

var (
	busyboxOnce sync.Once
	busyboxData []byte
)

// busyboxLayer is a small root filesystem around the host's static busybox
// (Debian's busybox-static): a shell, a user "app", a setuid binary, a file
// only root may read, a directory owned by app.
func busyboxLayer(t testing.TB) []byte {
	t.Helper()
	busyboxOnce.Do(func() { busyboxData, _ = os.ReadFile("/bin/busybox") })
	if len(busyboxData) == 0 {
		t.Fatal("/bin/busybox (Debian's busybox-static) is needed: apt-get install busybox-static")
	}
	bb := ot.File("bin/busybox", string(busyboxData))
	bb.Mode = 0o755
	su := ot.File("bin/su", "setuid")
	su.Mode = 0o4755
	shadow := ot.File("etc/shadow", "root:*:19000::::::\n")
	shadow.Mode, shadow.GID = 0o000, 42
	home := ot.Dir("home/app/")
	home.UID, home.GID, home.Mode = 1000, 1000, 0o750
	notes := ot.File("home/app/notes", "hello\n")
	notes.UID, notes.GID = 1000, 1000
	return ot.Tar(t, ot.Dir("bin/"), bb, ot.Symlink("bin/sh", "busybox"), su,
		ot.Dir("etc/"), ot.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
		ot.File("etc/group", "root:x:0:\nshadow:x:42:\napp:x:1000:\nstaff:x:50:\n"), shadow,
		ot.Dir("home/"), home, notes, ot.Symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
}

// openStore opens a store in a temp dir that finds no credentials.
func openStore(t testing.TB, opts Options) *Store {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// debugfs runs a read-only debugfs request on a disk image.
func debugfs(t testing.TB, disk, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v\n%s", request, disk, err, out)
	}
	return string(out)
}

func pull(t testing.TB, s *Store, ref string, opts PullOptions) *Image {
	t.Helper()
	img, err := s.Pull(context.Background(), ref, opts)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func pushWithAuth(ref string, img v1.Image) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "user", Password: "secret"}))
}
