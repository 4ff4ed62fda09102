package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testKey() Key {
	return Key{KernelSHA256: strings.Repeat("a", 64), InitramfsSHA256: strings.Repeat("b", 64), MemoryMB: 512, VCPUs: 1, VMM: "qemu/tcg 7.2.22"}
}

func TestKeyIDChangesWithEveryField(t *testing.T) {
	base := testKey()
	if base.ID() != testKey().ID() || CheckID(base.ID()) != nil {
		t.Fatalf("ID %q is not stable or not a valid id", base.ID())
	}
	for name, k := range map[string]Key{
		"kernel":    {KernelSHA256: strings.Repeat("c", 64), InitramfsSHA256: base.InitramfsSHA256, MemoryMB: 512, VCPUs: 1, VMM: base.VMM},
		"initramfs": {KernelSHA256: base.KernelSHA256, InitramfsSHA256: strings.Repeat("c", 64), MemoryMB: 512, VCPUs: 1, VMM: base.VMM},
		"memory":    {KernelSHA256: base.KernelSHA256, InitramfsSHA256: base.InitramfsSHA256, MemoryMB: 256, VCPUs: 1, VMM: base.VMM},
		"vcpus":     {KernelSHA256: base.KernelSHA256, InitramfsSHA256: base.InitramfsSHA256, MemoryMB: 512, VCPUs: 2, VMM: base.VMM},
		"vmm":       {KernelSHA256: base.KernelSHA256, InitramfsSHA256: base.InitramfsSHA256, MemoryMB: 512, VCPUs: 1, VMM: "qemu/kvm 7.2.22"},
	} {
		if k.ID() == base.ID() {
			t.Errorf("changing the %s kept the snapshot id %s", name, k.ID())
		}
	}
}

func TestKeyValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Key)
		want string
	}{
		{func(k *Key) { k.KernelSHA256 = "xyz" }, `kernel_sha256 "xyz"`},
		{func(k *Key) { k.InitramfsSHA256 = "" }, `initramfs_sha256 ""`},
		{func(k *Key) { k.MemoryMB = 32 }, "memory_mb 32"},
		{func(k *Key) { k.VCPUs = 0 }, "vcpus 0"},
		{func(k *Key) { k.VMM = "" }, `vmm ""`},
	} {
		k := testKey()
		tc.mod(&k)
		if err := k.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error naming %s", err, tc.want)
		}
	}
	if err := CheckID("../x"); err == nil {
		t.Error(`CheckID("../x") accepted a path`)
	}
}

// saveFiles is a BuildFunc writing a sparse "memory" file and a small "state" file.
func saveFiles(secret string) BuildFunc {
	return func(_ context.Context, dir string) (string, error) {
		f, err := os.Create(filepath.Join(dir, "mem"))
		if err != nil {
			return "", err
		}
		f.Truncate(8 << 20)
		f.WriteAt([]byte("guest memory page"), 3<<20)
		f.Close()
		return secret, os.WriteFile(filepath.Join(dir, "state"), []byte("device state"), 0o644)
	}
}

func TestBuildLoadRoundTripAndModes(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	k := testKey()
	if _, err := s.Load(k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of an empty store = %v, want ErrNotFound", err)
	}
	built, err := s.Build(context.Background(), k, saveFiles("s3cr3t"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir != built.Dir || got.Meta.Secret != "s3cr3t" || got.Meta.Key != k || len(got.Meta.Files) != 2 {
		t.Fatalf("Load = %+v, want the built snapshot %+v", got, built)
	}
	for _, p := range []string{s.Dir(), got.Dir} {
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %04o, want 0700", p, st.Mode().Perm())
		}
	}
	for _, name := range []string{"mem", "state", metaFile} {
		if st, _ := os.Stat(filepath.Join(got.Dir, name)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, st.Mode().Perm())
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != k.ID() || list[0].Err != nil {
		t.Fatalf("List = %+v, %v; want the one snapshot", list, err)
	}
	// The 8 MiB memory file has one page written: the snapshot takes a few KiB.
	if d := list[0].Disk; d <= 0 || d >= 1<<20 || d >= list[0].Meta.Size() {
		t.Errorf("List Disk = %d bytes for a %d-byte snapshot with one written page, want its allocated blocks", d, list[0].Meta.Size())
	}
	if err := s.Remove(context.Background(), k.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(k); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove(context.Background(), k.ID()); err == nil {
		t.Fatal("removing a missing snapshot succeeded")
	}
}

func TestOpenRefusesAnOpenStore(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "0755") {
		t.Fatalf("Open of a 0755 store = %v, want a refusal naming the mode", err)
	}
}

func TestLoadDetectsCorruption(t *testing.T) {
	for name, corrupt := range map[string]func(dir string){
		"flipped byte": func(dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "mem"), os.O_WRONLY, 0)
			f.WriteAt([]byte("G"), 3<<20)
			f.Close()
		},
		"new page in a hole": func(dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "mem"), os.O_WRONLY, 0)
			f.WriteAt([]byte("x"), 5<<20)
			f.Close()
		},
		"truncated":    func(dir string) { os.Truncate(filepath.Join(dir, "mem"), 1<<20) },
		"missing file": func(dir string) { os.Remove(filepath.Join(dir, "state")) },
		"extra file":   func(dir string) { os.WriteFile(filepath.Join(dir, "extra"), nil, 0o600) },
		"bad meta":     func(dir string) { os.WriteFile(filepath.Join(dir, metaFile), []byte("{"), 0o600) },
		"other key": func(dir string) {
			m, _ := readMeta(dir)
			m.Key.MemoryMB = 1024
			os.Remove(filepath.Join(dir, metaFile))
			writeMeta(dir, m)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := Open(filepath.Join(t.TempDir(), "s"))
			snap, err := s.Build(context.Background(), testKey(), saveFiles("x"))
			if err != nil {
				t.Fatal(err)
			}
			corrupt(snap.Dir)
			if _, err := s.Load(testKey()); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			// Build replaces it.
			if _, err := s.Build(context.Background(), testKey(), saveFiles("y")); err != nil {
				t.Fatal(err)
			}
			if snap, err := s.Load(testKey()); err != nil || snap.Meta.Secret != "y" {
				t.Fatalf("Load after rebuild = %+v, %v", snap, err)
			}
		})
	}
}

func TestChecksumIgnoresSparseness(t *testing.T) {
	dir := t.TempDir()
	sparse, dense := filepath.Join(dir, "sparse"), filepath.Join(dir, "dense")
	f, _ := os.Create(sparse)
	f.Truncate(4 << 20)
	f.WriteAt([]byte("data"), 1<<20+5)
	f.Close()
	b := make([]byte, 4<<20)
	copy(b[1<<20+5:], "data")
	os.WriteFile(dense, b, 0o600)
	a, _, err1 := fileChecksum(sparse)
	c, _, err2 := fileChecksum(dense)
	if err1 != nil || err2 != nil || a != c {
		t.Fatalf("sparse %s (%v) != dense %s (%v)", a, err1, c, err2)
	}
	// Same non-zero data at another offset is another file.
	b2 := make([]byte, 4<<20)
	copy(b2[2<<20+5:], "data")
	os.WriteFile(dense, b2, 0o600)
	if d, _, _ := fileChecksum(dense); d == a {
		t.Fatal("moving data to another offset kept the checksum")
	}
}

func TestBuildOnceUnderConcurrency(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	var builds atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Stores: the lock must hold across processes, not only objects.
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = s.Build(context.Background(), testKey(), func(ctx context.Context, d string) (string, error) {
				builds.Add(1)
				time.Sleep(100 * time.Millisecond)
				return saveFiles("z")(ctx, d)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d builds ran for one key, want 1", n)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".build-") {
			t.Errorf("build directory %s left behind", e.Name())
		}
	}
}

func TestFailedBuildLeavesNothing(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "s"))
	_, err := s.Build(context.Background(), testKey(), func(context.Context, string) (string, error) {
		return "", errors.New("qemu died")
	})
	if err == nil || !strings.Contains(err.Error(), "qemu died") {
		t.Fatalf("Build = %v, want the build's error", err)
	}
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("failed build left directory %s", e.Name())
		}
	}
}

func TestLockWaitHonoursContext(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "s"))
	unlock, err := s.lock(context.Background(), testKey().ID())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := s.Build(ctx, testKey(), saveFiles("x")); err == nil || !strings.Contains(err.Error(), "another voidbox") {
		t.Fatalf("Build while locked = %v, want a wait that ends with ctx", err)
	}
}
