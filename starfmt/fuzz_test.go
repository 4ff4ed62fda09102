package starfmt

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

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
		if !utf8.Valid(src) || bytes.IndexByte(src, 0) >= 0 { // refused, see checkText
			return
		}
		file, err := dialect().Parse("f.star", bytes.TrimPrefix(src, bom), 0)
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
