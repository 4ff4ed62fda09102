package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/internal/digest"
	"github.com/voidbox/voidbox/snapshot"
)

// tempSnapshots points the snapshot commands at a store of the test's own.
func tempSnapshots(t *testing.T) *snapshot.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snapshots")
	old := snapshotDir
	snapshotDir = func() (string, error) { return dir, nil }
	t.Cleanup(func() { snapshotDir = old })
	s, err := snapshot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addSnapshot(t *testing.T, s *snapshot.Store, memory int) string {
	t.Helper()
	k := snapshot.Key{KernelSHA256: strings.Repeat("a", 64), InitramfsSHA256: strings.Repeat("b", 64), MemoryMB: memory, VCPUs: 1, VMM: "qemu/tcg test"}
	snap, err := s.Build(context.Background(), k, func(_ context.Context, dir string) (string, error) {
		return "secret", os.WriteFile(filepath.Join(dir, "state"), []byte("state"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap.Meta.ID
}

func TestSnapshotListAndRemove(t *testing.T) {
	s := tempSnapshots(t)
	a, b := addSnapshot(t, s, 256), addSnapshot(t, s, 512)
	r := voidbox(t, "snapshot", "ls")
	if r.code != exitOK || !strings.Contains(r.stdout, a) || !strings.Contains(r.stdout, "256 MiB") || !strings.Contains(r.stdout, b) || !strings.Contains(r.stdout, "qemu/tcg test") {
		t.Fatalf("snapshot ls = %d %q %q; want both snapshots with their size and VMM", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "secret") {
		t.Fatalf("snapshot ls printed the snapshot's agent secret: %q", r.stdout)
	}
	if r := voidbox(t, "snapshot", "rm", a); r.code != exitOK || !strings.Contains(r.stdout, "removed "+a) {
		t.Fatalf("snapshot rm %s = %d %q %q", a, r.code, r.stdout, r.stderr)
	}
	if r := voidbox(t, "snapshot", "ls"); strings.Contains(r.stdout, a) || !strings.Contains(r.stdout, b) {
		t.Fatalf("after rm, ls = %q", r.stdout)
	}
	if r := voidbox(t, "snapshot", "rm", "--all"); r.code != exitOK || !strings.Contains(r.stdout, "removed "+b) {
		t.Fatalf("snapshot rm --all = %d %q %q", r.code, r.stdout, r.stderr)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("snapshots left after rm --all: %+v", list)
	}
}

func TestSnapshotUsageErrors(t *testing.T) {
	tempSnapshots(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"snapshot"}, exitUsage, "want a subcommand: build, ls, rm or prune"},
		{[]string{"snapshot", "rm"}, exitUsage, "give snapshot IDs"},
		{[]string{"snapshot", "rm", "../etc"}, exitUsage, `snapshot id "../etc"`},
		{[]string{"snapshot", "build", "--memory", "32"}, exitUsage, "--memory must be 64 to 65536"},
		{[]string{"exec", "--warm", "sometimes", "x.star"}, exitUsage, `--warm must be auto or off, got "sometimes"`},
	} {
		r := voidbox(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("voidbox %v = %d %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// prune keeps the snapshots of the guest image a run would use (here --kernel and
// --initramfs) and removes the others.
func TestSnapshotPrune(t *testing.T) {
	s := tempSnapshots(t)
	dir := t.TempDir()
	kernel, initramfs := writeFile(t, dir, "kernel", "a kernel"), writeFile(t, dir, "initramfs", "an initramfs")
	ksum, _ := digest.File(kernel)
	isum, _ := digest.File(initramfs)
	current := snapshot.Key{KernelSHA256: ksum, InitramfsSHA256: isum, MemoryMB: 256, VCPUs: 1, VMM: "qemu/tcg test"}
	keep, err := s.Build(context.Background(), current, func(_ context.Context, dir string) (string, error) {
		return "secret", os.WriteFile(filepath.Join(dir, "state"), []byte("state"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	old := addSnapshot(t, s, 512) // another image's digests
	r := voidbox(t, "snapshot", "prune", "--kernel", kernel, "--initramfs", initramfs)
	if r.code != exitOK || !strings.Contains(r.stdout, "removed "+old+" (another guest image") || strings.Contains(r.stdout, keep.Meta.ID) {
		t.Fatalf("snapshot prune = %d %q %q; want %s removed and %s kept", r.code, r.stdout, r.stderr, old, keep.Meta.ID)
	}
	if list, _ := s.List(); len(list) != 1 || list[0].ID != keep.Meta.ID {
		t.Fatalf("snapshots after prune: %+v, want only %s", list, keep.Meta.ID)
	}
	if r := voidbox(t, "snapshot", "prune", "--kernel", filepath.Join(dir, "missing")); r.code == exitOK || !strings.Contains(r.stderr, "missing") {
		t.Fatalf("prune with a missing kernel = %d %q, want an error naming it", r.code, r.stderr)
	}
}
