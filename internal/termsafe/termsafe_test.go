package termsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text\n\tindented", "plain text\n\tindented"},
		{"[    0.1] Linux\r\n[    0.2] next\r\n", "[    0.1] Linux\n[    0.2] next\n"},
		{"progress 10%\rprogress 99%", "progress 10%\nprogress 99%"},
		{"\x1b[31mred\x1b[0m text", "red text"},
		{"\x1b[2J\x1b[Hcleared", "cleared"},
		{"\x1b]0;fake title\x07after", "after"},
		{"\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"},
		{"\x1bPdevice control\x1b\\x", "x"},
		{"\x1bcreset", "reset"},
		{"\x1b(Bcharset", "charset"},
		{"bell\x07 back\x08space nul\x00 del\x7f", "bell backspace nul del"},
		{"c1 \u009b31mcsi and \u0085nel", "c1 csi and nel"},
		{"bidi \u202eevil\u202c \u2066iso\u2069", "bidi evil iso"},
		{"bad \xff\xfe utf8", "bad \ufffd\ufffd utf8"},
		{"héllo wörld ✓", "héllo wörld ✓"},
		{"cut off \x1b[12", "cut off "},
		{"unterminated \x1b]0;title\nnext line", "unterminated \nnext line"},
		{"esc at end \x1b", "esc at end "},
		{"", ""},
	} {
		if got := Clean(c.in); got != c.want {
			t.Errorf("Clean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"a\x1b[1mb", "\x1b]0;t\x07", "\r\n", "\u009b1m", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Clean(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Clean(%q) = %q is not valid UTF-8", s, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) || isBidiControl(r) {
				t.Fatalf("Clean(%q) = %q keeps control %U", s, out, r)
			}
		}
		if len(out) > 3*len(s) {
			t.Fatalf("Clean(%q) grew to %d bytes", s, len(out))
		}
		if Clean(out) != out {
			t.Fatalf("Clean is not idempotent on %q: %q then %q", s, out, Clean(out))
		}
	})
}

func TestCleanLarge(t *testing.T) {
	s := strings.Repeat("\x1b[1;31mx\r\n", 100000)
	if got := Clean(s); got != strings.Repeat("x\n", 100000) {
		t.Fatalf("Clean of a long colored log: %d bytes", len(got))
	}
}
