package unpack

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func layerOf(digest string, data []byte) Layer {
	return Layer{Digest: digest, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

// sandbox is a temp dir holding the unpack root and, next to it, an
// "outside" directory with a canary file that no layer may touch.
type sandbox struct {
	top, root, outside string
}

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	top := t.TempDir()
	s := sandbox{top: top, root: filepath.Join(top, "root"), outside: filepath.Join(top, "outside")}
	for _, d := range []string{s.root, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "canary"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOutside fails the test if anything beside root/ and outside/canary
// exists in the sandbox's top directory or the canary changed.
func (s sandbox) checkOutside(t testing.TB) {
	t.Helper()
	var got []string
	err := filepath.WalkDir(s.top, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.top, p)
		if rel == "root" {
			return filepath.SkipDir
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", s.top, err)
	}
	sort.Strings(got)
	if want := []string{".", "outside", "outside/canary"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("outside the root: got %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(s.outside, "canary")); err != nil || string(b) != "canary" {
		t.Fatalf("canary changed: %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(s.outside, "canary")); err != nil || fi.Mode() != 0o644 {
		t.Fatalf("canary mode changed: %v, %v", fi.Mode(), err)
	}
}

func (s sandbox) apply(t testing.TB, opts Options, layers ...[]byte) (*Result, error) {
	t.Helper()
	var ls []Layer
	for i, data := range layers {
		ls = append(ls, layerOf("sha256:layer"+string(rune('0'+i)), data))
	}
	return Apply(context.Background(), s.root, ls, opts)
}

// tree lists the root as "path kind [target|content]" lines.
func (s sandbox) tree(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&os.ModeSymlink != 0:
			to, _ := os.Readlink(p)
			out = append(out, rel+" -> "+to)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			b, _ := os.ReadFile(p)
			out = append(out, rel+" = "+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking root: %v", err)
	}
	return out
}
