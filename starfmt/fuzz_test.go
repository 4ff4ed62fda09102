package starfmt

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	vstar "github.com/voidbox/voidbox/starlark"
	"go.starlark.net/resolve"
)

// FuzzFormat: whatever `voidbox exec` would accept (UTF-8 text without NUL bytes that
// parses and resolves in its dialect), fmt formats, to a fixed point. Format itself
// checks that the result is the same program with the same comments.
func FuzzFormat(f *testing.F) {
	for _, pattern := range []string{"testdata/dialect/*.star*", "../examples/*.star", "../stdlib/*.star"} {
		files, _ := filepath.Glob(pattern)
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	anyName := func(string) bool { return true }
	f.Fuzz(func(t *testing.T, src []byte) {
		text, err := vstar.PrepareSource("f.star", src)
		if err != nil { // exec refuses it too
			return
		}
		file, err := vstar.FileOptions().Parse("f.star", text, 0)
		if err != nil || resolve.File(file, anyName, anyName) != nil {
			return
		}
		out, err := Format("f.star", src)
		if err != nil {
			t.Fatalf("Format refused a program exec accepts: %v\n%q", err, src)
		}
		again, err := Format("f.star", out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not a fixed point (%v):\nonce: %q\ntwice: %q", err, out, again)
		}
	})
}
