package debootstrap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountsUnder(t *testing.T) {
	table := `22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:5 / /proc rw - proc proc rw
41 22 0:40 / /work/build/root rw - tmpfs tmpfs rw
42 41 0:41 / /work/build/root/proc rw - proc proc rw
43 41 0:42 / /work/build/root/sys rw - sysfs sysfs rw
44 22 0:43 / /work/build/root2 rw - tmpfs tmpfs rw
45 22 0:44 / /work/build/with\040space/proc rw - proc proc rw
`
	got := mountsUnder([]byte(table), "/work/build/root")
	want := []string{"/work/build/root", "/work/build/root/proc", "/work/build/root/sys"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mountsUnder = %q, want %q (root2 is a sibling, not under root)", got, want)
	}
	if got := mountsUnder([]byte(table), "/work/build/with space"); !reflect.DeepEqual(got, []string{"/work/build/with space/proc"}) {
		t.Errorf("mountsUnder with an escaped space = %q", got)
	}
}

// Unmount detaches what a killed debootstrap would leave mounted, so removing
// the tree cannot reach the host's /proc.
func TestUnmountDetachesMountsUnderTheTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	root := t.TempDir()
	proc := filepath.Join(root, "proc")
	if err := os.Mkdir(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatalf("mount proc: %v", err)
	}
	if err := Unmount(root); err != nil {
		unix.Unmount(proc, unix.MNT_DETACH)
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(proc, "self")); !errors.Is(err, os.ErrNotExist) {
		unix.Unmount(proc, unix.MNT_DETACH)
		t.Fatalf("%s/self still there after Unmount (err %v)", proc, err)
	}
}

// A failing debootstrap is an error with its arguments and its own words, and
// leaves nothing mounted in the tree.
func TestBuildFailureSaysWhy(t *testing.T) {
	if err := Check(); err != nil {
		t.Skip(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	err := Build(context.Background(), root, Options{Mirror: "http://127.0.0.1:1/debian", Include: []string{"ca-certificates"}})
	if err == nil {
		t.Fatal("Build against a closed port succeeded")
	}
	for _, want := range []string{"debootstrap --variant=minbase --include=ca-certificates bookworm", "127.0.0.1:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if m := mountsUnder(b, root); len(m) > 0 {
		t.Errorf("left mounted: %q", m)
	}
}
