package runtime

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The last stderr line is guest text quoted in the stage error, which reaches a
// terminal: escape sequences are removed, and a long line is cut on a rune boundary.
func TestLastLineIsTerminalSafe(t *testing.T) {
	got := lastLine("first\n\x1b]0;pwned\x07\x1b[2Jboom\x1b[31m red\r\n")
	if strings.ContainsAny(got, "\x1b\x07") || !strings.Contains(got, "boom") {
		t.Fatalf("lastLine = %q; want the text without escape sequences", got)
	}
	long := strings.Repeat("é", 150) // after "x", byte 200 falls inside an "é"
	got = lastLine("x" + long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...") || len(got) > 203 {
		t.Fatalf("lastLine(long) = %q (%d bytes); want valid UTF-8 cut near 200 bytes", got, len(got))
	}
}
