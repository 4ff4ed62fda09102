package agent

import (
	"path"
	"slices"
	"strings"
	"testing"
)

// FuzzConfine: whatever path the host sends, a path that passes confine names a
// location lexically inside one of the roots (symlinks are openat2's job).
func FuzzConfine(f *testing.F) {
	for _, s := range []string{"/workspace/a", "a/../../etc", "/tmp", "/tmpx/y", "//workspace//a/./b", "/workspace/..", ""} {
		f.Add(s)
	}
	s, err := NewServer(Options{Roots: []string{"/workspace", "/tmp"}, Unconfined: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		root, rel, err := s.confine(p)
		if err != nil {
			return
		}
		if !slices.Contains(s.opts.Roots, root) {
			t.Fatalf("confine(%q) root %q is not an allowed root", p, root)
		}
		if rel != "." && (path.IsAbs(rel) || path.Clean(rel) != rel) {
			t.Fatalf("confine(%q) rel %q is not clean and relative", p, rel)
		}
		for _, el := range strings.Split(rel, "/") {
			if el == ".." {
				t.Fatalf("confine(%q) rel %q climbs out", p, rel)
			}
		}
	})
}
