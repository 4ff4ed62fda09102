package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	frames := [][]byte{bytes.Repeat([]byte{1}, MinLen), bytes.Repeat([]byte{2}, 1514)}
	for _, f := range frames {
		if err := Write(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Len(); got != 2*HeaderLen+MinLen+1514 {
		t.Fatalf("wrote %d bytes, want %d", got, 2*HeaderLen+MinLen+1514)
	}
	r := NewReader(&b, 1514)
	buf := make([]byte, 1514)
	for i, want := range frames {
		got, err := r.Next(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := r.Next(buf); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

// A hostile length is refused before anything is read or allocated for it.
func TestBounds(t *testing.T) {
	for _, n := range []uint32{0, MinLen - 1, 1515, 1 << 31, 1<<32 - 1} {
		var hdr [HeaderLen]byte
		binary.BigEndian.PutUint32(hdr[:], n)
		src := io.MultiReader(bytes.NewReader(hdr[:]), strings.NewReader(strings.Repeat("x", 2000)))
		buf := make([]byte, 1514)
		_, err := NewReader(src, 1514).Next(buf)
		if err == nil || !strings.Contains(err.Error(), "out of bounds") {
			t.Errorf("length %d: got %v, want an out-of-bounds error", n, err)
		}
		if !bytes.Equal(buf, make([]byte, 1514)) {
			t.Errorf("length %d: the frame's bytes were read before the length was checked", n)
		}
	}
}

func TestTruncated(t *testing.T) {
	for name, in := range map[string][]byte{
		"inside prefix": {0, 0},
		"inside frame":  append(binary.BigEndian.AppendUint32(nil, 20), make([]byte, 10)...),
	} {
		_, err := NewReader(bytes.NewReader(in), 1514).Next(make([]byte, 1514))
		if err == nil || errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: got %v, want an error about a truncated frame", name, err)
		}
	}
}

// FuzzReader: whatever the guest sends, the reader never panics, returns only frames within
// [MinLen, max], and stops at the first error.
func FuzzReader(f *testing.F) {
	var ok bytes.Buffer
	_ = Write(&ok, make([]byte, MinLen))
	_ = Write(&ok, make([]byte, 100))
	f.Add(ok.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 1514
		r := NewReader(bytes.NewReader(in), max)
		buf := make([]byte, max)
		read := 0
		for {
			fr, err := r.Next(buf)
			if err != nil {
				return
			}
			if len(fr) < MinLen || len(fr) > max {
				t.Fatalf("frame of %d bytes", len(fr))
			}
			read += HeaderLen + len(fr)
			if read > len(in) {
				t.Fatalf("returned %d bytes of frames from %d bytes of input", read, len(in))
			}
		}
	})
}
