package vmstate

import "bytes"

// MaxConsoleLine bounds one console line handed to a line callback; the rest of a
// longer line is dropped (the log file and the tail still have it).
const MaxConsoleLine = 4 << 10

// LineSplitter cuts a VM's console stream into lines for a callback (--verbose prints
// them as "[vm:NAME] ..."). The guest decides what it prints, so a line is bounded:
// one that never ends costs MaxConsoleLine bytes, not memory without end. Line ends
// are "\n" with an optional "\r" before it. Not safe for concurrent Writes.
type LineSplitter struct {
	f   func(string)
	max int
	buf []byte
	cut bool // the current line passed max: drop until its end
}

// NewLineSplitter calls f with each complete line, without its line end.
func NewLineSplitter(f func(string)) *LineSplitter {
	return &LineSplitter{f: f, max: MaxConsoleLine}
}

// Write implements io.Writer; it never fails.
func (s *LineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !s.cut {
			room := s.max - len(s.buf)
			if len(chunk) > room {
				s.buf = append(s.buf, chunk[:room]...)
				s.cut = true
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		s.emit()
		p = p[i+1:]
	}
	return n, nil
}

// Flush hands on a last line that had no line end (the VM stopped mid-line).
func (s *LineSplitter) Flush() {
	if len(s.buf) > 0 || s.cut {
		s.emit()
	}
}

func (s *LineSplitter) emit() {
	line := bytes.TrimSuffix(s.buf, []byte("\r"))
	text := string(line)
	if s.cut {
		text += " [line cut]"
	}
	s.buf, s.cut = s.buf[:0], false
	s.f(text)
}
