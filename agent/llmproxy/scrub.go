package llmproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// minScrubLen is the shortest key masked in what goes back to the guest. Shorter "keys"
// (Ollama is often given "ollama") are not secrets, and masking them would garble ordinary
// text that happens to contain them.
const minScrubLen = 8

// scrubbing reports whether key is long enough to be masked.
func scrubbing(key string) bool { return len(key) >= minScrubLen }

// mask replaces every occurrence of key in s with as many '*'.
func mask(s, key string) string {
	if !scrubbing(key) {
		return s
	}
	return strings.ReplaceAll(s, key, strings.Repeat("*", len(key)))
}

// maskBytes is mask in place.
func maskBytes(b, key []byte) {
	for i := 0; ; {
		j := bytes.Index(b[i:], key)
		if j < 0 {
			return
		}
		i += j
		for k := range key {
			b[i+k] = '*'
		}
		i += len(key)
	}
}

// scrubReader masks key in a stream. Masking keeps the length (Content-Length stays right),
// and only bytes that could be the start of the key are held back between reads; an SSE
// event ends in "\n\n", which starts no key, so events still pass through the moment they
// arrive.
type scrubReader struct {
	r       io.ReadCloser
	key     []byte
	fail    []int // KMP failure function of key
	buf     []byte
	pending []byte // a tail that may be the start of the key
	out     []byte // masked bytes not yet returned
	err     error
}

func newScrubReader(r io.ReadCloser, key string) *scrubReader {
	return &scrubReader{r: r, key: []byte(key), fail: failure([]byte(key)), buf: make([]byte, 32<<10)}
}

func (s *scrubReader) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		n, err := s.r.Read(s.buf)
		data := append(s.pending, s.buf[:n]...)
		s.pending = nil
		maskBytes(data, s.key)
		if err != nil {
			s.err = err
			s.out = data
			break
		}
		keep := s.keyPrefixSuffix(data)
		s.out = data[:len(data)-keep]
		s.pending = append([]byte(nil), data[len(data)-keep:]...)
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

func (s *scrubReader) Close() error { return s.r.Close() }

// keyPrefixSuffix is the length of the longest tail of b that is a proper prefix of the key:
// the state of a KMP matcher for the key after b's last len(key)-1 bytes, so a read costs
// O(len(key)) whatever the key.
func (s *scrubReader) keyPrefixSuffix(b []byte) int {
	key := s.key
	q := 0
	for _, c := range b[max(0, len(b)-(len(key)-1)):] {
		for q > 0 && key[q] != c {
			q = s.fail[q-1]
		}
		if key[q] == c {
			q++
		}
		if q == len(key) {
			q = s.fail[q-1]
		}
	}
	return q
}

// failure is KMP's failure function: fail[i] is the length of the longest proper prefix of
// key[:i+1] that is also its suffix.
func failure(key []byte) []int {
	fail := make([]int, len(key))
	for i, k := 1, 0; i < len(key); i++ {
		for k > 0 && key[i] != key[k] {
			k = fail[k-1]
		}
		if key[i] == key[k] {
			k++
		}
		fail[i] = k
	}
	return fail
}

// errorJSON is Anthropic's error body.
func errorJSON(errorType, message string) []byte {
	body, _ := json.Marshal(map[string]any{
		"type":  "error",
		"error": map[string]string{"type": errorType, "message": message},
	})
	return body
}
