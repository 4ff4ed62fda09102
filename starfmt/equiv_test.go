package starfmt

import (
	"slices"
	"strings"
	"testing"

	vstar "github.com/voidbox/voidbox/starlark"
)

func parseSource(t *testing.T, text string) *source {
	t.Helper()
	f, err := vstar.FileOptions().Parse("p.star", text, 0)
	if err != nil {
		t.Fatal(err)
	}
	src, err := newSource([]byte(text), f)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// compare is what keeps fmt from writing a program that means something else; these are
// the differences buildifier's printer could introduce.
func TestCompare(t *testing.T) {
	cases := []struct {
		orig, out string
		bad       []int // top-level statements reported
	}{
		{"x = ('a')  # c\n", "x = \"a\"  # c\n", nil},
		{"x = 1.0\ny = 0x10\n", "x = 1.0\ny = 16\n", nil},
		{"x = 1\ny = 2\nz = 3\n", "x = 1\ny = 3\nz = 3\n", []int{1}},
		{"load(\"b\", \"x\")\nload(\"a\", \"y\")\n", "load(\"a\", \"y\")\nload(\"b\", \"x\")\n", []int{0, 1}},
		{"x = [  # keep sorted\n  2, 1]\n", "x = [  # keep sorted\n  1, 2]\n", []int{0}},
		{"x = 1  # c\ny = 2\n", "x = 1\ny = 2\n", []int{0}},
		{"x = 1\ny = 2  # c\n", "x = 1\ny = 2  # d\n", []int{1}},
		{"# head\nx = 1\n", "x = 1\n", []int{0}},
		// A comment may move to the neighbouring node, not past the next statement.
		{"x = [1,  # c\n  2]\ny = 3\n", "x = [\n    1,\n    2,\n]  # c\ny = 3\n", nil},
		{"x = 1  # c\ny = 2\n", "x = 1\n# c\ny = 2\n", nil},
		{"x = 1  # c\ny = 2\n", "x = 1\ny = 2  # c\n", []int{0, 1}},
		{"x = 1\ny = 2\n", "x = 1\n", []int{1}},
		{"x = 1\ny = 2\n", "x = 1\nz = 1\ny = 2\n", []int{1}},
		{"x = b'\\x41'\n", "x = '\\x41'\n", []int{0}},
		{"s = '# not a comment'\n", "s = \"# not a comment\"\n", nil},
	}
	for _, c := range cases {
		bad, err := compare("p.star", parseSource(t, c.orig), []byte(c.out))
		if err != nil || !slices.Equal(bad, c.bad) {
			t.Errorf("%q -> %q: statements %v, error %v; want %v", c.orig, c.out, bad, err, c.bad)
		}
	}
	_, err := compare("p.star", parseSource(t, "x = 1\n"), []byte("x = (\n"))
	if want := "p.star: cannot format: buildifier printed text that does not parse (output line 2 column 1: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("unparsable output: error %v, want %q...", err, want)
	}
}

// A statement buildifier would print unfaithfully is left as written; the rest of the
// file is formatted around it.
func TestKeepsWhatBuildifierLoses(t *testing.T) {
	// buildifier drops the whole-line comment inside the subscript.
	lossy := "A0[10 %  # a\n    # b\n    0]"
	src := "x=1\n" + lossy + "\ny=[1,2]\nz = 1; w = 2\n"
	want := "x = 1\n" + lossy + "\ny = [1, 2]\nz = 1\nw = 2\n"
	got, err := Format("p.star", []byte(src))
	if err != nil || string(got) != want {
		t.Fatalf("Format = %q, %v; want %q", got, err, want)
	}
	if again, err := Format("p.star", got); err != nil || string(again) != want {
		t.Errorf("not a fixed point: %q, %v", again, err)
	}
	// Statements on one line are kept together.
	src = "x = 1; " + lossy + "\n"
	if got, err := Format("p.star", []byte(src)); err != nil || string(got) != src {
		t.Errorf("Format = %q, %v; want it unchanged", got, err)
	}
}

func TestOrigOffset(t *testing.T) {
	src := parseSource(t, "while x:\n  s = b'1'\n")
	h, err := hide(src, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   string // hidden text at the offset
		want int    // offset in the original
	}{
		{"for " + h.sentinel, 0},
		{"x:", 6},
		{"s =", 11},
		{h.sentinel + "_b", 15},
	} {
		i := strings.Index(string(h.src), c.in)
		if got := h.origOffset(i); i < 0 || got != c.want {
			t.Errorf("origOffset of %q (at %d in %q) = %d, want %d", c.in, i, h.src, got, c.want)
		}
	}
}
