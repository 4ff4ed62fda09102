package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// BuildExt4 keeps the tree's owners and modes (the root directory's too, which
// mkfs.ext4 -d does not copy) and derives the UUID from id.
func TestBuildExt4KeepsTheTreesOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to uid 1000 needs root")
	}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "home/app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "home/app/notes"), []byte("n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{"": 0o711, "home/app": 0o750, "home/app/notes": 0o640} {
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"home/app", "home/app/notes"} {
		if err := os.Lchown(filepath.Join(root, p), 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "tree.ext4")
	if err := BuildExt4(context.Background(), root, out, "agent root 1"); err != nil {
		t.Fatal(err)
	}
	checkInodes(t, out, map[string][3]string{
		"/":               {"0", "0", "0711"},
		"/bin/tool":       {"0", "0", "0755"},
		"/home/app":       {"1000", "1001", "0750"},
		"/home/app/notes": {"1000", "1001", "0640"},
	})
	uuid := regexp.MustCompile(`Filesystem UUID:\s+(\S+)`).FindStringSubmatch(debugfs(t, out, "stats"))
	sum := sha256.Sum256([]byte("agent root 1"))
	if want := digestUUID("sha256:" + hex.EncodeToString(sum[:])); uuid == nil || uuid[1] != want {
		t.Errorf("UUID %v, want %s", uuid, want)
	}
}

// A tree that does not exist is an error naming it, not an empty disk.
func TestBuildExt4MissingTree(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	err := BuildExt4(context.Background(), missing, filepath.Join(t.TempDir(), "x.ext4"), "x")
	if err == nil || !regexp.MustCompile(regexp.QuoteMeta(missing)).MatchString(err.Error()) {
		t.Fatalf("err = %v, want one naming %s", err, missing)
	}
}
