package oci

import (
	"strings"
	"testing"
)

// FuzzParseDigest: a digest accepted by parseDigest becomes a file name in
// the cache, so it must be exactly "sha256:" and 64 lower-case hex digits.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("a", 64), "sha256:../../etc/passwd", "sha512:00", "",
		"sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("0", 63) + "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseDigest(s)
		if err != nil {
			if !strings.Contains(err.Error(), "is not sha256:<64 lower-case hex digits>") {
				t.Fatalf("error %q does not say what is expected", err)
			}
			return
		}
		if len(h) != 64 || "sha256:"+h != s {
			t.Fatalf("parseDigest(%q) = %q", s, h)
		}
		for _, c := range h {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				t.Fatalf("parseDigest(%q) accepted %q", s, c)
			}
		}
	})
}
