package proto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/voidbox/voidbox/internal/termsafe"
	"io"
	"io/fs"
	"time"
)

// Size bounds. Every decoder checks them before allocating.
const (
	MaxFrame       = 1 << 20   // payload of one frame
	MaxHeader      = 64 << 10  // JSON request/response payloads
	MaxHello       = 4 << 10   // one handshake message
	MaxFileSize    = 256 << 20 // WriteFile/ReadFile content
	MaxArgs        = 4096      // exec argv + env entries
	fileChunk      = 256 << 10 // data frame size used for file content
	frameHeaderLen = 5
)

// FrameType says what a frame's payload is.
type FrameType byte

// Frame types. Request is always the first frame on a stream the host opens, Open
// on a stream the guest opens (a forwarded connection: forward.go).
const (
	FrameRequest  FrameType = 1  // host→guest: JSON Request
	FrameStdin    FrameType = 2  // host→guest: exec stdin bytes
	FrameStdinEOF FrameType = 3  // host→guest: exec stdin closed
	FrameStdout   FrameType = 4  // guest→host: exec stdout bytes
	FrameStderr   FrameType = 5  // guest→host: exec stderr bytes
	FrameExit     FrameType = 6  // guest→host: JSON ExecResult, last frame of an exec
	FrameError    FrameType = 7  // guest→host: JSON RemoteError, last frame of a failed request; host→guest: a refused forward
	FrameData     FrameType = 8  // either way: file content chunk, or a forwarded connection's bytes
	FrameEnd      FrameType = 9  // host→guest: end of file content; either way: a forwarded connection's half-close
	FrameOK       FrameType = 10 // guest→host: JSON Response, last frame of a successful request
	FrameOpen     FrameType = 11 // guest→host: JSON ForwardOpen, first frame of a forwarded connection
	FrameStats    FrameType = 12 // guest→host: a resource sample during an exec (stats.go)
	frameTypeMax            = FrameStats
)

func (t FrameType) String() string {
	names := [...]string{"", "request", "stdin", "stdin-eof", "stdout", "stderr", "exit", "error", "data", "end", "ok", "open", "stats"}
	if t >= 1 && t <= frameTypeMax {
		return names[t]
	}
	return fmt.Sprintf("frame(%d)", byte(t))
}

// Frame is one typed message on a stream.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// WriteFrame writes one frame: type byte, big-endian uint32 length, payload.
// It is a single Write so frames from one writer never interleave.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("%s frame payload is %d bytes, at most %d allowed", t, len(payload), MaxFrame)
	}
	buf := make([]byte, frameHeaderLen+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(payload)))
	copy(buf[frameHeaderLen:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame, rejecting unknown types and oversized payloads before
// allocating. io.EOF means the stream ended cleanly between frames.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("read frame header: %w", err)
		}
		return Frame{}, err
	}
	t := FrameType(h[0])
	if t < 1 || t > frameTypeMax {
		return Frame{}, fmt.Errorf("unknown frame type %d", h[0])
	}
	n := binary.BigEndian.Uint32(h[1:])
	limit := uint32(MaxFrame)
	if t == FrameRequest || t == FrameExit || t == FrameError || t == FrameOK || t == FrameOpen {
		limit = MaxHeader
	}
	if t == FrameStats {
		limit = StatsLen
	}
	if n > limit {
		return Frame{}, fmt.Errorf("%s frame announces %d bytes, at most %d allowed", t, n, limit)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return Frame{}, fmt.Errorf("read %s frame payload (%d bytes): %w", t, n, noEOF(err))
	}
	return Frame{Type: t, Payload: p}, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// strictUnmarshal decodes one JSON value, refusing unknown fields and trailing data,
// so a malformed or mismatched peer fails loudly instead of being half-understood.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// Ops carried in Request.Op.
const (
	OpExec      = "exec"
	OpCancel    = "cancel"
	OpWriteFile = "write_file"
	OpReadFile  = "read_file"
	OpStat      = "stat"
	OpMkdir     = "mkdir"
	OpPing      = "ping"
	OpShutdown  = "shutdown"
)

// Request is the first frame of every stream.
type Request struct {
	Op        string            `json:"op"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Dir       string            `json:"dir,omitempty"`
	TimeoutMS int64             `json:"timeout_ms,omitempty"`
	Path      string            `json:"path,omitempty"`
	Mode      uint32            `json:"mode,omitempty"`
	Size      int64             `json:"size,omitempty"`
	Stream    uint32            `json:"stream,omitempty"`   // OpCancel: the exec's stream id
	StatsMS   int64             `json:"stats_ms,omitempty"` // OpExec: sampling interval (stats.go), 0 off
}

// DecodeRequest parses and validates a request frame payload.
func DecodeRequest(p []byte) (Request, error) {
	if len(p) > MaxHeader {
		return Request{}, fmt.Errorf("request is %d bytes, at most %d allowed", len(p), MaxHeader)
	}
	var r Request
	if err := strictUnmarshal(p, &r); err != nil {
		return Request{}, fmt.Errorf("decode request: %w", err)
	}
	switch r.Op {
	case OpExec:
		if len(r.Args) == 0 || r.Args[0] == "" {
			return Request{}, errors.New("exec request needs a program in args[0]")
		}
		if len(r.Args)+len(r.Env) > MaxArgs {
			return Request{}, fmt.Errorf("exec request has %d args and env entries, at most %d allowed", len(r.Args)+len(r.Env), MaxArgs)
		}
		if r.TimeoutMS < 0 {
			return Request{}, fmt.Errorf("exec timeout %dms is negative", r.TimeoutMS)
		}
		if err := checkStatsInterval(r.StatsMS); err != nil {
			return Request{}, err
		}
		for _, a := range r.Args {
			if bytes.IndexByte([]byte(a), 0) >= 0 {
				return Request{}, errors.New("exec argument contains a NUL byte")
			}
		}
		for k, v := range r.Env {
			if k == "" || bytes.ContainsAny([]byte(k), "=\x00") || bytes.IndexByte([]byte(v), 0) >= 0 {
				return Request{}, fmt.Errorf("exec env name %q must be non-empty without '=' or NUL, and values without NUL", k)
			}
		}
	case OpWriteFile, OpReadFile, OpStat, OpMkdir:
		if r.Path == "" {
			return Request{}, fmt.Errorf("%s request needs a path", r.Op)
		}
		if r.Size < 0 || r.Size > MaxFileSize {
			return Request{}, fmt.Errorf("%s size %d out of range 0..%d", r.Op, r.Size, MaxFileSize)
		}
	case OpCancel, OpPing, OpShutdown:
	default:
		return Request{}, fmt.Errorf("unknown request op %q", r.Op)
	}
	return r, nil
}

// Response is the payload of FrameOK.
type Response struct {
	Info *FileInfo `json:"info,omitempty"`
}

// FileInfo describes a file in the guest (Client.Stat).
type FileInfo struct {
	Name    string      `json:"name"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"mtime"`
}

// IsDir reports whether the file is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// ExitStatus is the payload of FrameExit.
type ExitStatus struct {
	ExitCode int    `json:"code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	OOM      bool   `json:"oom,omitempty"` // see ExecResult.OOM
}

// Error codes carried in RemoteError.Code.
const (
	CodeNotAllowed = "not_allowed"
	CodeBadPath    = "bad_path"
	CodeNotFound   = "not_found"
	CodeTooLarge   = "too_large"
	CodeBadRequest = "bad_request"
	CodeExecFailed = "exec_failed"
	CodeIO         = "io"
	CodeExists     = "exists"
)

// RemoteError is an error the guest agent reported for one request.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error quotes the guest's message with terminal control sequences removed:
// the text is the guest's, and it ends up on the user's terminal.
func (e *RemoteError) Error() string { return "guest agent: " + termsafe.Clean(e.Message) }

// marshal encodes v for a JSON frame, panicking only on programmer error
// (the protocol's types always marshal).
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("proto: marshal %T: %v", v, err))
	}
	return b
}

// WriteJSON writes a JSON frame of type t.
func WriteJSON(w io.Writer, t FrameType, v any) error { return WriteFrame(w, t, marshal(v)) }

// DecodeJSON decodes a bounded JSON frame payload strictly.
func DecodeJSON(p []byte, v any) error {
	if len(p) > MaxHeader {
		return fmt.Errorf("JSON payload is %d bytes, at most %d allowed", len(p), MaxHeader)
	}
	return strictUnmarshal(p, v)
}
