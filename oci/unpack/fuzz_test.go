package unpack

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/voidbox/voidbox/internal/ocitest"
)

// FuzzUnpack applies two arbitrary byte strings as layers: whatever they
// hold, Apply must not panic, must not write outside the root, and must not
// leave a relative symlink in the root that climbs above it.
func FuzzUnpack(f *testing.F) {
	s := newSandbox(f)
	seeds := [][2][]byte{
		{Tar(f, Dir("a/"), File("a/x", "1"), Symlink("a/l", "x"), Hardlink("a/h", "a/x")), Tar(f, File("a/.wh.x", ""))},
		{Tar(f, Symlink("evil", s.outside)), Tar(f, File("evil/x", "x"), File("evil/.wh.canary", ""))},
		{Tar(f, File("../x", "x"), File("/abs", "x")), Tar(f, Hardlink("h", "../outside/canary"))},
		{Tar(f, Dir("d/"), File("d/o", "o")), Tar(f, File("d/.wh..wh..opq", ""), Symlink("d/u", "../../up"))},
		{Tar(f, Symlink("l", "."), File("l/l/l/f", "f")), Tar(f, Symlink("m", "/"), File("m/f", "f"))},
		{[]byte("not a tar"), nil},
	}
	for _, sd := range seeds {
		f.Add(sd[0], sd[1])
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		s := newSandbox(t)
		ls := []Layer{layerOf("sha256:a", a), layerOf("sha256:b", b)}
		_, _ = Apply(context.Background(), s.root, ls, Options{MaxBytes: 1 << 20, MaxEntries: 1000, Chown: os.Geteuid() == 0})
		s.checkOutside(t)
		err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return err
			}
			to, err := os.Readlink(p)
			if err != nil || filepath.IsAbs(to) {
				return err
			}
			if r := filepath.Join(filepath.Dir(p), to); r != s.root && !strings.HasPrefix(r, s.root+"/") {
				t.Errorf("symlink %s -> %s leaves the root", p, to)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk: %v", err)
		}
	})
}
