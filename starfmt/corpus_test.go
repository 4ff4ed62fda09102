package starfmt_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/starfmt"
	vstar "github.com/voidbox/voidbox/starlark"
	sk "go.starlark.net/starlark"
)

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v (%d files)", pattern, err, len(m))
	}
	return m
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// formatStable formats src and checks that formatting is a fixed point.
func formatStable(t *testing.T, name string, src []byte) []byte {
	t.Helper()
	out, err := starfmt.Format(name, src)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	again, err := starfmt.Format(name, out)
	if err != nil {
		t.Fatalf("Format of the formatted text: %v\n%s", err, out)
	}
	if !bytes.Equal(again, out) {
		t.Fatalf("formatting twice changes the text:\nonce:\n%s\ntwice:\n%s", out, again)
	}
	return out
}

// execPrints runs src as the program name with `voidbox exec`'s interpreter (no runner:
// the corpus builds graphs but runs none) and returns what it printed.
func execPrints(t *testing.T, name string, src []byte) string {
	t.Helper()
	var out strings.Builder
	_, err := vstar.ExecSource(name, src, vstar.Options{
		Print: func(_ *sk.Thread, msg string) { fmt.Fprintln(&out, msg) },
	})
	if err != nil {
		t.Fatalf("exec: %s\nprogram:\n%s", vstar.FormatError(err), src)
	}
	return out.String()
}

// corpus is the dialect corpus: programs using what exec accepts beyond buildifier's
// grammar, mostly written unformatted. They are named .star.in so that `make fmt`, which
// formats every .star file in the repository, leaves them as they are; lib.star is a
// module load.star.in loads, and load() wants a .star name.
const corpus = "testdata/dialect/*.star*"

// Every program of the dialect corpus runs under exec, is accepted by fmt, formats to a
// fixed point, and the formatted program runs under exec with the same output.
func TestDialectCorpus(t *testing.T) {
	for _, p := range glob(t, corpus) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src := read(t, p)
			want := execPrints(t, p, src)
			out := formatStable(t, p, src)
			if got := execPrints(t, p, out); got != want {
				t.Errorf("the formatted program prints\n%s\nthe original\n%s\nformatted text:\n%s", got, want, out)
			}
			for _, c := range commentLines(src) {
				if !bytes.Contains(out, []byte(c)) {
					t.Errorf("comment %q lost:\n%s", c, out)
				}
			}
		})
	}
}

// commentLines returns the text from '#' to the end of each line that has one outside a
// string, for the corpus's simple cases (no '#' inside strings).
func commentLines(src []byte) []string {
	var out []string
	for _, line := range strings.Split(string(src), "\n") {
		if i := strings.Index(line, "#"); i >= 0 && !strings.ContainsAny(line[:i], `"'`) {
			out = append(out, strings.TrimSpace(line[i:]))
		}
	}
	return out
}

// The shipped examples and standard library are formatted already, and fmt accepts them.
func TestShippedFilesFormatted(t *testing.T) {
	files := append(glob(t, "../examples/*.star"), glob(t, "../stdlib/*.star")...)
	for _, p := range files {
		t.Run(p, func(t *testing.T) {
			src := read(t, p)
			if out := formatStable(t, p, src); !bytes.Equal(out, src) {
				t.Errorf("%s is not formatted (run voidbox fmt); fmt gives:\n%s", p, out)
			}
		})
	}
}
