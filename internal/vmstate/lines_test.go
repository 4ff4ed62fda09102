package vmstate

import (
	"strings"
	"testing"
	"time"
)

func TestLineSplitter(t *testing.T) {
	var got []string
	s := NewLineSplitter(func(l string) { got = append(got, l) })
	s.max = 8
	for _, chunk := range []string{"ab", "c\r\nde", "f\n", "\n", "0123456789abc", "def\nlast"} {
		if n, err := s.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if len(got) != 4 {
		t.Fatalf("before Flush: %q, want 4 lines", got)
	}
	s.Flush()
	want := []string{"abc", "def", "", "01234567 [line cut]", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", got, want)
	}
	s.Flush()
	if len(got) != len(want) {
		t.Errorf("a second Flush emitted %q", got[len(want):])
	}
}

// A guest that prints without end costs one bounded line.
func TestLineSplitterBoundsMemory(t *testing.T) {
	var lines int
	s := NewLineSplitter(func(string) { lines++ })
	chunk := []byte(strings.Repeat("x", 64<<10))
	for range 64 {
		s.Write(chunk)
	}
	if cap(s.buf) > 2*MaxConsoleLine || lines != 0 {
		t.Fatalf("buffer grew to %d bytes (%d lines), want at most %d", cap(s.buf), lines, 2*MaxConsoleLine)
	}
	s.Write([]byte("\n"))
	if lines != 1 {
		t.Errorf("%d lines, want 1", lines)
	}
}

func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("Linux version 6.1\r\nvoidbox-agent: serving\n\x1b[31mred"), 3)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		var total int
		s := NewLineSplitter(func(l string) {
			if len(l) > MaxConsoleLine+len(" [line cut]") || strings.Contains(l, "\n") {
				t.Fatalf("line of %d bytes or with a newline: %q", len(l), l)
			}
			total++
		})
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		s.Write(data[:cut])
		s.Write(data[cut:])
		s.Flush()
		if want := strings.Count(string(data), "\n"); total < want || total > want+1 {
			t.Fatalf("%d lines for %d newlines", total, want)
		}
	})
}

// The console hands its lines on as they arrive, and a last unterminated line at Close.
func TestConsoleOnLine(t *testing.T) {
	c, _, conn := listenTest(t, 1<<10, 64)
	got := make(chan string, 8)
	c.OnLine(func(l string) { got <- l })
	conn.Write([]byte("Linux version\r\nvoidbox-agent: ser"))
	conn.Write([]byte("ving\nno end"))
	for _, want := range []string{"Linux version", "voidbox-agent: serving"} {
		select {
		case l := <-got:
			if l != want {
				t.Errorf("line %q, want %q", l, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %q never arrived", want)
		}
	}
	conn.Close()
	if err := c.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if l != "no end" {
			t.Errorf("last line %q, want \"no end\"", l)
		}
	default:
		t.Error("the unterminated last line was not handed on at Close")
	}
}
