package llmproxy

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkReader returns its chunks one Read at a time, as a network stream might cut them.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkReader) Close() error { return nil }

// scrubAll reads text cut into chunks at the given points through a scrubReader.
func scrubAll(t testing.TB, text string, cuts []int, key string) string {
	var chunks []string
	last := 0
	for _, c := range cuts {
		if c > last && c < len(text) {
			chunks = append(chunks, text[last:c])
			last = c
		}
	}
	chunks = append(chunks, text[last:])
	out, err := io.ReadAll(newScrubReader(&chunkReader{chunks: chunks}, key))
	if err != nil {
		t.Fatalf("reading %q: %v", text, err)
	}
	return string(out)
}

func TestScrubReaderMasksAcrossChunks(t *testing.T) {
	key := "sk-abcabcabd-0000"
	text := "a sk-abcabcabd-0000 b sk-abcabcabd-000 c sk-abcabcabd-0000sk-abcabcabd-0000 sk-abc"
	want := strings.ReplaceAll(text, key, strings.Repeat("*", len(key)))
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j += 3 {
			if got := scrubAll(t, text, []int{i, j}, key); got != want {
				t.Fatalf("cut at %d and %d: got %q, want %q", i, j, got, want)
			}
		}
	}
}

func TestScrubReaderHoldsBackOnlyAKeyPrefix(t *testing.T) {
	key := "sk-ant-0123456789"
	pr, pw := io.Pipe()
	s := newScrubReader(pr, key)
	go pw.Write([]byte("data: {}\n\nsk-an"))
	buf := make([]byte, 64)
	n, err := s.Read(buf)
	if err != nil || string(buf[:n]) != "data: {}\n\n" {
		t.Fatalf("first read %q, %v; want the complete event and the possible key start held back", buf[:n], err)
	}
	go func() { pw.Write([]byte("other\n")); pw.Close() }()
	rest, err := io.ReadAll(s)
	if err != nil || string(rest) != "sk-another\n" {
		t.Fatalf("rest %q, %v; want the held bytes once they are not the key", rest, err)
	}
}

func TestScrubReaderPassesErrors(t *testing.T) {
	s := newScrubReader(io.NopCloser(iotest.ErrReader(io.ErrUnexpectedEOF)), "sk-ant-0123456789")
	if _, err := io.ReadAll(s); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestShortKeysAreNotMasked(t *testing.T) {
	if got := mask("ollama says hi", "ollama"); got != "ollama says hi" {
		t.Errorf("mask with a 6-byte key changed the text: %q", got)
	}
}

func FuzzScrubReader(f *testing.F) {
	f.Add("xx sk-ant-0123456789 yy sk-ant-01234", "sk-ant-0123456789", 3, 20)
	f.Add("aaaaaaaaaaaaaaaaaaaaab", "aaaaaaaab", 1, 2)
	f.Fuzz(func(t *testing.T, text, key string, cut1, cut2 int) {
		if len(key) < minScrubLen {
			return
		}
		want := []byte(text)
		maskBytes(want, []byte(key))
		got := scrubAll(t, text, []int{cut1, cut2}, key)
		if got != string(want) {
			t.Fatalf("chunked %q, whole %q", got, want)
		}
		if len(got) != len(text) {
			t.Fatalf("length %d, want %d", len(got), len(text))
		}
	})
}
