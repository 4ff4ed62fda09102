package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	ot "github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/oci/unpack"
)

func blobCount(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestListRemovePrune(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	shared := ot.TarLayer(t, busyboxLayer(t), false)
	a1 := ot.NewImage(t, v1.Config{}, "amd64", shared, ot.TarLayer(t, ot.Tar(t, ot.File("a", "1")), false))
	b := ot.NewImage(t, v1.Config{}, "amd64", shared, ot.TarLayer(t, ot.Tar(t, ot.File("b", "1")), false))
	a1Digest := ot.Push(t, reg.Ref("a:latest"), a1)
	bDigest := ot.Push(t, reg.Ref("b:latest"), b)
	s := openStore(t, Options{})
	ctx := context.Background()
	imgA := pull(t, s, reg.Ref("a:latest"), PullOptions{})
	pull(t, s, reg.Ref("b:latest"), PullOptions{})
	if _, err := s.Disk(ctx, imgA); err != nil {
		t.Fatal(err)
	}
	// manifest+config+2 layers each, the busybox layer shared: 7 blobs.
	if n := blobCount(t, s); n != 7 {
		t.Fatalf("%d blobs, want 7", n)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Ref != reg.Ref("a:latest") || list[0].Digest != a1Digest || !list[0].Disk ||
		list[1].Digest != bDigest || list[1].Disk || list[0].Size != imgA.Size || list[0].Size == 0 {
		t.Fatalf("list %+v", list)
	}

	// Nothing to prune yet.
	rep, err := s.Prune(ctx)
	if err != nil || rep.Blobs != 0 || rep.Disks != 0 {
		t.Fatalf("prune with nothing unused: %+v %v", rep, err)
	}
	// The tag moves: the old image stays until a prune.
	a2 := ot.NewImage(t, v1.Config{}, "amd64", shared, ot.TarLayer(t, ot.Tar(t, ot.File("a", "2")), false))
	ot.Push(t, reg.Ref("a:latest"), a2)
	pull(t, s, reg.Ref("a:latest"), PullOptions{})
	if n := blobCount(t, s); n != 10 {
		t.Fatalf("%d blobs after the tag moved, want 10", n)
	}
	os.WriteFile(s.path("tmp", "blob-interrupted"), []byte("partial"), 0o600)
	rep, err = s.Prune(ctx)
	if err != nil || rep.Blobs != 3 || rep.Disks != 1 || rep.Bytes == 0 {
		t.Fatalf("prune after the tag moved: %+v %v, want 3 blobs and a1's disk", rep, err)
	}
	if tmp, _ := os.ReadDir(s.path("tmp")); len(tmp) != 0 {
		t.Fatalf("prune left %v in tmp", tmp)
	}
	if _, err := os.Stat(s.diskPath(a1Digest)); !os.IsNotExist(err) {
		t.Fatalf("a1's disk survived the prune: %v", err)
	}

	// Remove b by reference: its own blobs go, the shared layer stays for a.
	rep, err = s.Remove(ctx, reg.Ref("b:latest"))
	if err != nil || len(rep.Refs) != 1 || rep.Refs[0] != reg.Ref("b:latest") || rep.Blobs != 3 {
		t.Fatalf("remove b: %+v %v", rep, err)
	}
	if n := blobCount(t, s); n != 4 {
		t.Fatalf("%d blobs after removing b, want 4", n)
	}
	if _, err := s.load(reg.Ref("a:latest"), mustDigest(t, a2)); err != nil {
		t.Fatalf("a is damaged after removing b: %v", err)
	}
	// Remove by digest forgets every reference to the image.
	pull(t, s, reg.Ref("a@"+mustDigest(t, a2)), PullOptions{})
	rep, err = s.Remove(ctx, mustDigest(t, a2))
	if err != nil || len(rep.Refs) != 2 || rep.Blobs != 4 {
		t.Fatalf("remove by digest: %+v %v", rep, err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("list after removing everything: %+v", list)
	}
	if _, err := s.Remove(ctx, reg.Ref("a:latest")); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Fatalf("removing a missing image: %v", err)
	}
	for _, bad := range []string{"::bad", "sha256:abc"} {
		if _, err := s.Remove(ctx, bad); !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), `"`+bad+`" is not valid; want`) {
			t.Errorf("removing the bad reference %q: %v, want ErrBadReference naming it", bad, err)
		}
	}
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestOpenDefaultsAndCorruptRefs(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	s, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".voidbox", "oci"); s.Dir() != want {
		t.Fatalf("dir %s, want %s", s.Dir(), want)
	}
	if fi, err := os.Stat(s.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir mode: %v %v", fi.Mode(), err)
	}
	os.WriteFile(s.path("refs.json"), []byte("{not json"), 0o644)
	if _, err := s.List(); err == nil || !strings.Contains(err.Error(), "refs.json") {
		t.Fatalf("corrupt refs.json: %v", err)
	}
}

func TestCorruptCachedManifestIsReported(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	digest := ot.Push(t, reg.Ref("c:1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("a", "a")), false)))
	s := openStore(t, Options{})
	pull(t, s, reg.Ref("c:1"), PullOptions{})
	if err := os.WriteFile(s.blobPath(digest), []byte(`{"tampered":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.load(reg.Ref("c:1"), digest)
	if err == nil || !strings.Contains(err.Error(), "corrupt cache") {
		t.Fatalf("tampered manifest: %v", err)
	}
}

// Options.Limits reach the unpacker.
func TestLimitsApplyToDisks(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ot.Push(t, reg.Ref("big:1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, busyboxLayer(t), false)))
	s := openStore(t, Options{Limits: unpack.Options{MaxBytes: 1 << 20}})
	_, err := s.Disk(context.Background(), pull(t, s, reg.Ref("big:1"), PullOptions{}))
	if !errors.Is(err, unpack.ErrRefused) || !strings.Contains(err.Error(), `"bin/busybox"`) || !strings.Contains(err.Error(), "image size limit of 1048576 bytes") {
		t.Fatalf("busybox over a 1 MiB limit: %v", err)
	}
	s = openStore(t, Options{Limits: unpack.Options{MaxEntries: 3}})
	_, err = s.Disk(context.Background(), pull(t, s, reg.Ref("big:1"), PullOptions{}))
	if !errors.Is(err, unpack.ErrRefused) || !strings.Contains(err.Error(), "more than 3 entries") {
		t.Fatalf("busybox over a 3-entry limit: %v", err)
	}
}
