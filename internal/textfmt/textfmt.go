// Package textfmt shortens and formats text for messages, logs and reports: one way to
// cut a string without splitting a character, and one way to print a duration.
package textfmt

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Clip returns s when it is at most n bytes long, else its first n bytes or fewer, cut
// on a character boundary, followed by mark ("..." or "…").
func Clip(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Duration is "410ms" under a second and "1.203s" from there on: milliseconds always,
// never Go's variable "1.2s" / "1m2.5s".
func Duration(d time.Duration) string {
	d = d.Truncate(time.Millisecond)
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}
