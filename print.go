package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"go.starlark.net/starlark"
)

// printTo sends the program's print() lines to w.
func printTo(w io.Writer) func(*starlark.Thread, string) {
	return func(_ *starlark.Thread, msg string) { fmt.Fprintln(w, msg) }
}

// stdoutWriter is voidbox's stdout during a run. Output that cannot be written is lost
// output, so the first failed write is kept (Err), reported once to onErr, which stops
// the run since nothing it prints can reach anyone, and later writes are dropped.
type stdoutWriter struct {
	w     io.Writer
	onErr func(error)

	mu  sync.Mutex
	err error
}

func (s *stdoutWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return 0, err
	}
	n, err := s.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err == nil {
		s.mu.Unlock()
		return n, nil
	}
	s.err = writeError{err}
	s.mu.Unlock()
	if s.onErr != nil {
		s.onErr(writeError{err})
	}
	return n, writeError{err}
}

// Err is the first write error, nil when every write succeeded.
func (s *stdoutWriter) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// writeError is a failed write to stdout: "write stdout: no space left on device". The
// file's own name ("/dev/stdout") would only say "stdout" again.
type writeError struct{ err error }

func (e writeError) Error() string {
	err := e.err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "write stdout: " + err.Error()
}

func (e writeError) Unwrap() error { return e.err }
