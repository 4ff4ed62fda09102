package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	. "github.com/voidbox/voidbox/internal/ocitest"
)

func TestApplyBuildsTheTree(t *testing.T) {
	s := newSandbox(t)
	exe := File("bin/tool", "#!/bin/sh\n")
	exe.Mode = 0o4755
	exe.UID, exe.GID = 0, 0
	owned := File("home/app/data", "x")
	owned.UID, owned.GID = 1000, 1001
	secret := File("etc/shadow", "s")
	secret.Mode = 0o000
	layer := Tar(t,
		Dir("bin/"), exe,
		File("./etc/hostname", "box\n"), secret,
		owned, // home/ and home/app/ are implicit
		Symlink("usr/bin/tool", "/bin/tool"),
		Symlink("bin/sh", "tool"),
		Hardlink("bin/tool2", "bin/tool"),
	)
	res, err := s.apply(t, Options{Chown: true}, layer)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bin/", "bin/sh -> tool", "bin/tool = #!/bin/sh\n", "bin/tool2 = #!/bin/sh\n",
		"etc/", "etc/hostname = box\n", "etc/shadow = s", "home/", "home/app/", "home/app/data = x",
		"usr/", "usr/bin/", "usr/bin/tool -> /bin/tool"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tree:\n got %q\nwant %q", got, want)
	}
	st := stat(t, filepath.Join(s.root, "bin/tool"))
	if st.Mode&07777 != 0o4755 || st.Nlink != 2 {
		t.Errorf("bin/tool: mode %o nlink %d, want 4755 and 2 (hardlinked)", st.Mode&07777, st.Nlink)
	}
	if st := stat(t, filepath.Join(s.root, "home/app/data")); st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("home/app/data owner %d:%d, want 1000:1001 with Chown", st.Uid, st.Gid)
	}
	if st := stat(t, filepath.Join(s.root, "etc/shadow")); st.Mode&07777 != 0 {
		t.Errorf("etc/shadow mode %o, want 0 with Chown", st.Mode&07777)
	}
	if st := stat(t, filepath.Join(s.root, "home")); st.Mode&07777 != 0o755 || st.Uid != 0 {
		t.Errorf("implicit dir home: mode %o uid %d, want 755 root", st.Mode&07777, st.Uid)
	}
	if a := res.Attrs[stat(t, filepath.Join(s.root, "home/app/data")).Ino]; a != (Attr{UID: 1000, GID: 1001, Mode: syscall.S_IFREG | 0o644}) {
		t.Errorf("recorded attr of home/app/data = %+v", a)
	}
	for _, p := range []string{"bin", "bin/tool", "usr/bin/tool"} {
		if st := stat(t, filepath.Join(s.root, p)); st.Mtim.Sec != 1700000000 {
			t.Errorf("%s: mtime %d, want the header's 1700000000", p, st.Mtim.Sec)
		}
	}
	if res.Entries != 8 || res.Bytes != int64(len("#!/bin/sh\nbox\nsx")) {
		t.Errorf("entries %d bytes %d", res.Entries, res.Bytes)
	}
	s.checkOutside(t)
}

// Without Chown (voidbox not root) files keep the bits mkfs needs to read
// them, and the image's owner and mode are in Attrs only.
func TestApplyWithoutChownRecordsAttrs(t *testing.T) {
	s := newSandbox(t)
	secret := File("etc/shadow", "s")
	secret.Mode, secret.UID, secret.GID = 0o000, 0, 42
	locked := Dir("locked/")
	locked.Mode = 0o500
	res, err := s.apply(t, Options{}, Tar(t, secret, locked, File("locked/f", "f")))
	if err != nil {
		t.Fatal(err)
	}
	st := stat(t, filepath.Join(s.root, "etc/shadow"))
	if st.Mode&07777 != 0o400 {
		t.Errorf("etc/shadow on disk mode %o, want 400 (owner read kept)", st.Mode&07777)
	}
	if a := res.Attrs[st.Ino]; a != (Attr{UID: 0, GID: 42, Mode: syscall.S_IFREG}) {
		t.Errorf("etc/shadow attr %+v, want 0:42 mode 0", a)
	}
	st = stat(t, filepath.Join(s.root, "locked"))
	if st.Mode&07777 != 0o700 {
		t.Errorf("locked/ on disk mode %o, want 700", st.Mode&07777)
	}
	if a := res.Attrs[st.Ino]; a.Mode != syscall.S_IFDIR|0o500 {
		t.Errorf("locked/ attr mode %o, want dir 500", a.Mode)
	}
}

func TestWhiteouts(t *testing.T) {
	s := newSandbox(t)
	lower := Tar(t, Dir("a/"), File("a/x", "1"), File("a/y", "2"), Dir("b/"), File("b/z", "3"), File("c", "4"))
	upper := Tar(t,
		File("a/.wh.x", ""), File(".wh.b", ""),
		File("c", "new"), File(".wh.c", ""), // a whiteout never hides its own layer's file
		File(".wh.nothere", ""),
	)
	if _, err := s.apply(t, Options{Chown: true}, lower, upper); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/", "a/y = 2", "c = new"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tree:\n got %q\nwant %q", got, want)
	}
}

func TestOpaqueDirectory(t *testing.T) {
	s := newSandbox(t)
	lower := Tar(t, Dir("d/"), File("d/old", "o"), Dir("d/sub/"), File("d/sub/old2", "o2"), File("keep", "k"))
	upper := Tar(t,
		File("d/sub/new", "n"), // before the marker: kept; its lower siblings are not
		File("d/.wh..wh..opq", ""),
		File("d/new2", "n2"), // after the marker
	)
	if _, err := s.apply(t, Options{Chown: true}, lower, upper); err != nil {
		t.Fatal(err)
	}
	want := []string{"d/", "d/new2 = n2", "d/sub/", "d/sub/new = n", "keep = k"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tree:\n got %q\nwant %q", got, want)
	}
}

// A later layer's entry replaces whatever is at its path; it never writes
// through a symlink or into the other name of a hardlink.
func TestReplaceDoesNotFollow(t *testing.T) {
	s := newSandbox(t)
	lower := Tar(t, Symlink("link", filepath.Join(s.outside, "canary")), File("f", "shared"), Hardlink("h", "f"),
		Dir("was-dir/"), File("was-dir/x", "x"))
	upper := Tar(t, File("link", "mine"), File("h", "own"), File("was-dir", "now a file"))
	if _, err := s.apply(t, Options{Chown: true}, lower, upper); err != nil {
		t.Fatal(err)
	}
	want := []string{"f = shared", "h = own", "link = mine", "was-dir = now a file"}
	if got := s.tree(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tree:\n got %q\nwant %q", got, want)
	}
	s.checkOutside(t)
}

func TestSymlinkInsideRootIsFollowedForParents(t *testing.T) {
	s := newSandbox(t)
	// Debian's merged /usr: lib -> usr/lib; a later layer writing lib/x lands in usr/lib.
	lower := Tar(t, Dir("usr/lib/"), Symlink("lib", "usr/lib"))
	upper := Tar(t, File("lib/libx.so", "elf"))
	if _, err := s.apply(t, Options{Chown: true}, lower, upper); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(s.root, "usr/lib/libx.so")); err != nil || string(b) != "elf" {
		t.Fatalf("usr/lib/libx.so: %q, %v", b, err)
	}
}

func TestMaliciousLayersAreRefused(t *testing.T) {
	huge := File("big", "")
	huge.Size = 1 << 40
	tooBig := File("big2", strings.Repeat("x", 2<<20))
	var many []Entry
	for i := range 11 {
		many = append(many, File(fmt.Sprintf("f%d", i), ""))
	}
	for _, tc := range []struct {
		name   string
		layers func(s sandbox) [][]Entry
		entry  string // the refused entry
		reason string
		opts   Options
	}{
		{name: "traversal", layers: one(File("../outside/evil", "x")), entry: "../outside/evil", reason: `".." in path`},
		{name: "traversal inside", layers: one(File("a/../../outside/evil", "x")), entry: "a/../../outside/evil", reason: `".."`},
		{name: "absolute path", layers: func(s sandbox) [][]Entry { return [][]Entry{{File(s.outside+"/evil", "x")}} },
			reason: "absolute path"},
		{name: "relative symlink out", layers: one(Dir("a/"), Symlink("a/up", "../../outside")), entry: "a/up", reason: "points outside the root"},
		{name: "absolute symlink dir then file through it", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("evil", s.outside)}, {File("evil/evil", "x")}}
		}, entry: "evil/evil", reason: "leaves the root"},
		{name: "symlink chain then file", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("b", s.outside), Symlink("a", "b"), File("a/evil", "x")}}
		}, entry: "a/evil", reason: "leaves the root"},
		{name: "symlink dir then new subdir through it", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("evil", s.outside), File("evil/new/deeper/f", "x")}}
		}, entry: "evil/new/deeper/f", reason: "leaves the root"},
		{name: "hardlink out", layers: one(Hardlink("h", "../outside/canary")), entry: "h", reason: `".."`},
		{name: "hardlink absolute", layers: func(s sandbox) [][]Entry { return [][]Entry{{Hardlink("h", s.outside+"/canary")}} },
			entry: "h", reason: "absolute path"},
		{name: "hardlink through symlink", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("l", s.outside), Hardlink("h", "l/canary")}}
		}, entry: "h", reason: "leaves the root"},
		{name: "whiteout through symlink", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("l", s.outside)}, {File("l/.wh.canary", "")}}
		}, entry: "l/.wh.canary", reason: "leaves the root"},
		{name: "opaque through symlink", layers: func(s sandbox) [][]Entry {
			return [][]Entry{{Symlink("l", s.outside)}, {File("l/.wh..wh..opq", "")}}
		}, entry: "l/.wh..wh..opq", reason: "leaves the root"},
		{name: "huge file header", layers: one(huge), entry: "big", reason: "exceed the image size limit"},
		{name: "file over the limit", layers: one(tooBig), entry: "big2", reason: "exceed", opts: Options{MaxBytes: 1 << 20}},
		{name: "too many entries", layers: one(many...), entry: "f10", reason: "more than 10 entries", opts: Options{MaxEntries: 10}},
		{name: "file as a parent", layers: one(File("f", "x"), File("f/x", "y")), entry: "f/x", reason: "not a directory"},
		{name: "whiteout without a name", layers: one(Dir("a/"), File("a/x", "x"), File("a/.wh.", "")), entry: "a/.wh.", reason: "whiteout of"},
		{name: "root as a file", layers: one(File("a", "x"), File(".", "")), entry: ".", reason: "the root can only be a directory"},
		{name: "root as a symlink", layers: one(File("a", "x"), Symlink(".", "a")), entry: ".", reason: "the root can only be a directory"},
		{name: "hardlink to a directory", layers: one(Dir("d/"), Hardlink("h", "d")), entry: "h", reason: "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			var layers [][]byte
			for _, l := range tc.layers(s) {
				layers = append(layers, Tar(t, l...))
			}
			_, err := s.apply(t, tc.opts, layers...)
			var r *Refusal
			if !errors.As(err, &r) || !errors.Is(err, ErrRefused) {
				t.Fatalf("want a refusal, got %v", err)
			}
			if want := fmt.Sprintf("sha256:layer%d", len(layers)-1); r.Layer != want {
				t.Errorf("refusal names layer %q, want %q", r.Layer, want)
			}
			if tc.entry != "" && r.Entry != tc.entry {
				t.Errorf("refusal names entry %q, want %q", r.Entry, tc.entry)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), r.Layer) {
				t.Errorf("error %q does not name the layer and say %q", err, tc.reason)
			}
			s.checkOutside(t)
		})
	}
}

func one(ents ...Entry) func(sandbox) [][]Entry {
	return func(sandbox) [][]Entry { return [][]Entry{ents} }
}

// An absolute symlink is kept (it is resolved from the image root in the
// guest: Debian's /lib64/ld-linux-x86-64.so.2 is one) but never followed.
func TestAbsoluteSymlinkIsKeptNotFollowed(t *testing.T) {
	s := newSandbox(t)
	_, err := s.apply(t, Options{Chown: true}, Tar(t, Symlink("lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
		Symlink("etc", s.outside)))
	if err != nil {
		t.Fatal(err)
	}
	if to, err := os.Readlink(filepath.Join(s.root, "lib64/ld.so")); err != nil || to != "/lib/x86_64-linux-gnu/ld.so" {
		t.Fatalf("lib64/ld.so -> %q, %v", to, err)
	}
	s.checkOutside(t)
}

func TestDevicesAreIgnored(t *testing.T) {
	s := newSandbox(t)
	res, err := s.apply(t, Options{Chown: true}, Tar(t,
		Entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666}, Entry{Name: "dev/sda", Type: tar.TypeBlock, Mode: 0o660},
		Entry{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600}, File("ok", "ok")))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.tree(t); strings.Join(got, "|") != "ok = ok" {
		t.Fatalf("tree %q, want only ok", got)
	}
	if len(res.Ignored) != 3 || !strings.Contains(res.Ignored[0], "sha256:layer0: dev/null (character device)") {
		t.Fatalf("ignored %q", res.Ignored)
	}
}

func TestDiffIDIsChecked(t *testing.T) {
	s := newSandbox(t)
	data := Tar(t, File("a", "a"))
	sum := sha256.Sum256(data)
	good := layerOf("sha256:l", data)
	good.DiffID = "sha256:" + hex.EncodeToString(sum[:])
	if _, err := Apply(context.Background(), s.root, []Layer{good}, Options{}); err != nil {
		t.Fatalf("matching diff ID: %v", err)
	}
	bad := layerOf("sha256:l", data)
	bad.DiffID = "sha256:" + strings.Repeat("0", 64)
	_, err := Apply(context.Background(), newSandbox(t).root, []Layer{bad}, Options{})
	if err == nil || !strings.Contains(err.Error(), "the image config says sha256:000") {
		t.Fatalf("mismatching diff ID: %v", err)
	}
	trailing := layerOf("sha256:l", append(bytes.Clone(data), make([]byte, maxTrailing+1)...))
	trailing.DiffID = good.DiffID
	_, err = Apply(context.Background(), newSandbox(t).root, []Layer{trailing}, Options{})
	if err == nil || !strings.Contains(err.Error(), "after the end of the tar archive") {
		t.Fatalf("trailing garbage: %v", err)
	}
}

func TestTruncatedLayer(t *testing.T) {
	s := newSandbox(t)
	short := File("short", "abc")
	short.Size = 100 // the stream ends after the header
	_, err := s.apply(t, Options{}, Tar(t, short))
	if err == nil || !strings.Contains(err.Error(), `entry "short"`) || !strings.Contains(err.Error(), "sha256:layer0") {
		t.Fatalf("truncated layer: %v", err)
	}
}

func stat(t testing.TB, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
