// Package termsafe makes text that came from a guest (a console tail, a stage's
// stderr line) safe to print on the host's terminal. A guest controls those bytes:
// unfiltered, an escape sequence could move the cursor, rewrite earlier lines
// (hiding what voidbox printed), set the window title, or, on some terminals,
// answer back into the shell's input. Clean keeps the text readable and removes
// everything a terminal would interpret.
package termsafe

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s with every terminal control removed: C0 control characters
// except newline and tab, DEL, C1 controls (U+0080 to U+009F), escape sequences
// whole (CSI "ESC [ ... final", OSC/DCS/PM/APC strings up to their terminator,
// and two-byte "ESC x"), and the Unicode bidirectional overrides and isolates
// that reorder what a reader sees. "\r\n" becomes "\n" (serial consoles end lines
// that way) and a lone "\r", which would let later text overwrite a line, becomes
// "\n". Invalid UTF-8 bytes become U+FFFD. Printable text, including non-ASCII
// letters, is kept as is. Clean is linear in len(s).
func Clean(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\r':
			b.WriteByte('\n')
			i++
			if i < len(s) && s[i] == '\n' {
				i++
			}
			continue
		case c == 0x1b:
			i = skipEscape(s, i)
			continue
		case c == '\n' || c == '\t':
			b.WriteByte(c)
			i++
			continue
		case c < 0x20 || c == 0x7f:
			i++
			continue
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == 0x9b: // C1 CSI: a sequence like ESC [ follows
			i = skipSequenceBody(s, i+size, '[')
			continue
		case r >= 0x80 && r <= 0x9f, isBidiControl(r):
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isPlain reports whether s needs no change: printable ASCII, newlines and tabs.
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// skipEscape returns the index just past the escape sequence starting at s[i]
// (an ESC byte).
func skipEscape(s string, i int) int {
	i++ // ESC
	if i >= len(s) {
		return i
	}
	intro := s[i]
	switch intro {
	case '[', ']', 'P', '^', '_', 'X':
		return skipSequenceBody(s, i+1, intro)
	}
	if intro < 0x20 || intro == 0x7f {
		return i // ESC followed by a control: drop the ESC alone, the control is handled next
	}
	// Two-byte sequence (ESC c, ESC 7, ESC ( B's first part, ...). Take the
	// intermediate bytes (0x20-0x2F) and the final byte.
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipSequenceBody skips the body of a CSI (intro '[': parameter and
// intermediate bytes up to a final byte 0x40-0x7E) or of a string sequence
// (OSC ']', DCS 'P', SOS 'X', PM '^', APC '_': up to BEL, ESC \ or the C1 ST).
// A sequence cut off by the end of s, or broken by a byte that cannot be part of
// it, ends there; the breaking byte is left for the caller.
func skipSequenceBody(s string, i int, intro byte) int {
	if intro == '[' {
		for i < len(s) {
			c := s[i]
			switch {
			case c >= 0x40 && c <= 0x7e:
				return i + 1
			case c >= 0x20 && c <= 0x3f:
				i++
			default:
				return i
			}
		}
		return i
	}
	for i < len(s) {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == 0x1b:
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i
		case s[i] == '\n':
			return i // keep line structure: an unterminated string ends at the line
		case strings.HasPrefix(s[i:], "\u009c"):
			return i + len("\u009c")
		}
		i++
	}
	return i
}

// isBidiControl reports the Unicode formatting characters that reorder text on
// display (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, and the marks ALM, LRM, RLM).
func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x061c || r == 0x200e || r == 0x200f
}
