package oci

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

// Environment of the child process TestDiskAsUnprivilegedUser starts.
const (
	childRefEnv = "VOIDBOX_OCI_TEST_CHILD_REF"
	childDirEnv = "VOIDBOX_OCI_TEST_CHILD_DIR"
)

// TestDiskAsUnprivilegedUser pulls and builds a disk in a process running as
// nobody (no CAP_CHOWN, no reading files it does not own): the disk still
// has the image's owners and modes.
func TestDiskAsUnprivilegedUser(t *testing.T) {
	if ref := os.Getenv(childRefEnv); ref != "" {
		childPullAndBuild(ref, os.Getenv(childDirEnv))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child process as nobody; as non-root every test of this package already is that")
	}
	const nobody = 65534
	reg := ot.NewRegistry(t, nil)
	ot.Push(t, reg.Ref("unpriv:1"), ot.NewImage(t, v1.Config{User: "app"}, "amd64", ot.TarLayer(t, busyboxLayer(t), false)))

	// A directory nobody can use, with a copy of this test binary in it (go
	// test keeps its binary in a directory only root may enter).
	top, err := os.MkdirTemp("", "voidbox-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	bin := filepath.Join(top, "oci.test")
	if err := copyFile(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(top, "store")
	for _, d := range []string{top, store} {
		os.MkdirAll(d, 0o755)
	}
	os.Chmod(top, 0o755)
	if err := os.Chown(store, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestDiskAsUnprivilegedUser$", "-test.v")
	cmd.Env = append(os.Environ(), childRefEnv+"="+reg.Ref("unpriv:1"), childDirEnv+"="+store, "HOME="+store,
		"DOCKER_CONFIG="+store, "PATH=/usr/bin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	var disk string
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "DISK "); ok {
			disk = p
		}
	}
	if disk == "" {
		t.Fatalf("child printed no disk:\n%s", out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(disk, &st); err != nil || st.Uid != nobody {
		t.Fatalf("disk %s: owner %d, %v; want it built by nobody", disk, st.Uid, err)
	}
	checkInodes(t, disk, busyboxAttrs)
	checkInodes(t, disk, map[string][3]string{"/bin/su": {"0", "0", "04755"}})
	if fsck, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, fsck)
	}
}

// childPullAndBuild runs in the child: it must not use testing.T helpers
// that assume root, and reports through stdout and the exit status.
func childPullAndBuild(ref, dir string) {
	fail := func(err error) {
		fmt.Println("CHILD ERROR:", err)
		os.Exit(1)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fail(err)
	}
	if s.chown {
		fail(fmt.Errorf("the child runs as uid %d, which may chown", os.Geteuid()))
	}
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		fail(err)
	}
	d, err := s.Disk(context.Background(), img)
	if err != nil {
		fail(err)
	}
	if uid, gid, err := d.Owner(); err != nil || uid != 1000 || gid != 1000 {
		fail(fmt.Errorf("owner %d:%d %v, want 1000:1000", uid, gid, err))
	}
	fmt.Println("DISK " + d.Path)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
