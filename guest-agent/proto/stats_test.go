package proto

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStatsRoundTrip(t *testing.T) {
	for _, s := range []Stats{
		{Elapsed: 500 * time.Millisecond, CPU: 0.4321, CPUValid: true, MemUsed: 30 << 20, MemTotal: 480 << 20, NetRx: 1234, NetTx: 99, Procs: 57},
		{Elapsed: 0, MemTotal: 51 << 20, Procs: 1}, // the first sample of an instant exec: no CPU
		{Elapsed: maxStatsElapsed, CPU: 1, CPUValid: true, MemUsed: maxStatsMemory, MemTotal: maxStatsMemory, NetRx: math.MaxInt64, NetTx: math.MaxInt64, Procs: maxStatsProcs},
	} {
		p := EncodeStats(s)
		if len(p) != StatsLen {
			t.Fatalf("EncodeStats(%+v) is %d bytes, want %d", s, len(p), StatsLen)
		}
		got, err := DecodeStats(p)
		if err != nil {
			t.Fatalf("DecodeStats(EncodeStats(%+v)): %v", s, err)
		}
		if got != s {
			t.Errorf("round trip of %+v gave %+v", s, got)
		}
	}
}

// EncodeStats clamps what a sampler read oddly to what the host accepts.
func TestEncodeStatsClamps(t *testing.T) {
	got, err := DecodeStats(EncodeStats(Stats{Elapsed: -time.Second, CPU: 1.7, CPUValid: true, MemUsed: 9 << 40, MemTotal: 8 << 40, Procs: math.MaxUint32}))
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPU: 1, CPUValid: true, MemUsed: maxStatsMemory, MemTotal: maxStatsMemory, Procs: maxStatsProcs}
	if got != want {
		t.Errorf("clamped sample = %+v, want %+v", got, want)
	}
	got, _ = DecodeStats(EncodeStats(Stats{CPU: math.NaN(), CPUValid: true}))
	if got.CPU != 0 || !got.CPUValid {
		t.Errorf("NaN CPU encoded as %+v, want 0 with the flag", got)
	}
}

// The host's decoder refuses every field out of its range, naming it.
func TestDecodeStatsRefuses(t *testing.T) {
	valid := EncodeStats(Stats{Elapsed: time.Second, CPU: 0.5, CPUValid: true, MemUsed: 1 << 20, MemTotal: 2 << 20, Procs: 3})
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	for _, c := range []struct {
		name string
		p    []byte
		want string
	}{
		{"empty", nil, "0 bytes, want exactly 44"},
		{"short", valid[:43], "43 bytes"},
		{"long", append(bytes.Clone(valid), 0), "45 bytes"},
		{"version", mod(func(b []byte) { b[0] = 2 }), "version 2, want 1"},
		{"flags", mod(func(b []byte) { b[1] = 0x81 }), "flags 0x81"},
		{"cpu over 1", mod(func(b []byte) { binary.BigEndian.PutUint16(b[6:], 10001) }), "CPU 10001/10000"},
		{"cpu without flag", mod(func(b []byte) { b[1] = 0 }), "without the CPU flag"},
		{"elapsed", mod(func(b []byte) { binary.BigEndian.PutUint32(b[2:], math.MaxUint32) }), "elapsed"},
		{"mem total", mod(func(b []byte) { binary.BigEndian.PutUint64(b[16:], 1<<41) }), "memory total 2199023255552"},
		{"mem used", mod(func(b []byte) { binary.BigEndian.PutUint64(b[8:], 3<<20) }), "memory used 3145728 bytes exceeds its total 2097152"},
		{"net", mod(func(b []byte) { binary.BigEndian.PutUint64(b[24:], math.MaxUint64) }), "network bytes"},
		{"procs", mod(func(b []byte) { binary.BigEndian.PutUint32(b[40:], 1<<22+1) }), "process count 4194305"},
	} {
		_, err := DecodeStats(c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: DecodeStats error = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestStatsIntervalInRequest(t *testing.T) {
	for _, c := range []struct {
		ms   int64
		want string // "" valid
	}{{0, ""}, {100, ""}, {500, ""}, {10000, ""}, {99, "stats interval 99ms out of range"}, {10001, "10001ms"}, {-5, "-5ms"}} {
		_, err := DecodeRequest(marshal(Request{Op: OpExec, Args: []string{"true"}, StatsMS: c.ms}))
		if c.want == "" && err != nil {
			t.Errorf("stats_ms %d: %v", c.ms, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("stats_ms %d: err = %v, want one containing %q", c.ms, err, c.want)
		}
	}
	for d, want := range map[time.Duration]int64{0: 0, -time.Second: 0, time.Millisecond: 100, 500 * time.Millisecond: 500, time.Hour: 10000} {
		if got := statsMS(d); got != want {
			t.Errorf("statsMS(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestStatsGate(t *testing.T) {
	at := func(ms int) Stats { return Stats{Elapsed: time.Duration(ms) * time.Millisecond} }
	var off statsGate
	if err := off.check(at(500)); err != errUnaskedStats {
		t.Errorf("a sample nobody asked for: err = %v, want %v", err, errUnaskedStats)
	}
	g := statsGate{interval: 500 * time.Millisecond}
	for _, ms := range []int{500, 1000, 1500, 1510} { // the last is the exec's final sample
		if err := g.check(at(ms)); err != nil {
			t.Fatalf("sample at %dms: %v", ms, err)
		}
	}
	if err := g.check(at(1400)); err == nil || !strings.Contains(err.Error(), "before the previous sample's 1.51s") {
		t.Errorf("a sample back in time: err = %v", err)
	}
	flood := statsGate{interval: 500 * time.Millisecond}
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = flood.check(at(100))
	}
	if err == nil || !strings.Contains(err.Error(), "more than one per 250ms") {
		t.Errorf("ten samples at 100ms: err = %v, want a flood refused", err)
	}
}

// execAgainst runs an exec against a fake guest that answers with the frames.
func execAgainst(t *testing.T, interval time.Duration, onStats func(Stats), frames func(io.Writer)) error {
	t.Helper()
	secret, _ := NewSecret()
	h, g := net.Pipe()
	var reply bytes.Buffer
	frames(&reply)
	go fakeGuest(g, secret, reply.Bytes())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, h, secret)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Exec(ctx, ExecRequest{Args: []string{"x"}, StatsInterval: interval, OnStats: onStats})
	if ctx.Err() != nil {
		t.Fatal("Exec hung")
	}
	return err
}

func TestExecDeliversStats(t *testing.T) {
	s1 := Stats{Elapsed: 500 * time.Millisecond, CPU: 0.9, CPUValid: true, MemUsed: 40 << 20, MemTotal: 400 << 20, Procs: 12}
	s2 := Stats{Elapsed: 620 * time.Millisecond, CPU: 0.1, CPUValid: true, MemUsed: 41 << 20, MemTotal: 400 << 20, NetRx: 10, Procs: 11}
	var got []Stats
	err := execAgainst(t, 500*time.Millisecond, func(s Stats) { got = append(got, s) }, func(w io.Writer) {
		_ = WriteFrame(w, FrameStats, EncodeStats(s1))
		_ = WriteFrame(w, FrameStdout, []byte("out"))
		_ = WriteFrame(w, FrameStats, EncodeStats(s2))
		_ = WriteJSON(w, FrameExit, ExitStatus{})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != s1 || got[1] != s2 {
		t.Errorf("OnStats got %+v, want %+v and %+v", got, s1, s2)
	}

	// Without OnStats nothing was asked for, and a stats frame is a protocol error.
	err = execAgainst(t, 500*time.Millisecond, nil, func(w io.Writer) {
		_ = WriteFrame(w, FrameStats, EncodeStats(s1))
		_ = WriteJSON(w, FrameExit, ExitStatus{})
	})
	if err == nil || !strings.Contains(err.Error(), "did not ask for") {
		t.Errorf("unasked stats frame: err = %v", err)
	}

	// A malformed sample fails the exec, naming what is wrong.
	bad := EncodeStats(s1)
	bad[0] = 9
	err = execAgainst(t, time.Second, func(Stats) { t.Error("OnStats called with a malformed sample") }, func(w io.Writer) {
		_ = WriteFrame(w, FrameStats, bad)
		_ = WriteJSON(w, FrameExit, ExitStatus{})
	})
	if err == nil || !strings.Contains(err.Error(), "agent exec x: stats frame version 9") {
		t.Errorf("malformed stats frame: err = %v", err)
	}
}

// ReadFrame refuses a stats frame longer than a sample before reading it.
func TestReadFrameBoundsStats(t *testing.T) {
	var b bytes.Buffer
	_ = WriteFrame(&b, FrameStats, make([]byte, StatsLen+1))
	if _, err := ReadFrame(&b); err == nil || !strings.Contains(err.Error(), "stats frame announces 45 bytes, at most 44") {
		t.Errorf("oversized stats frame: err = %v", err)
	}
}

func FuzzDecodeStats(f *testing.F) {
	f.Add(EncodeStats(Stats{Elapsed: time.Second, CPU: 0.5, CPUValid: true, MemUsed: 1 << 20, MemTotal: 2 << 20, Procs: 3}))
	f.Add(EncodeStats(Stats{}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, p []byte) {
		s, err := DecodeStats(p)
		if err != nil {
			return
		}
		if s.CPU < 0 || s.CPU > 1 || s.MemUsed > s.MemTotal || s.MemTotal > maxStatsMemory || s.Procs > maxStatsProcs ||
			s.Elapsed < 0 || s.Elapsed > maxStatsElapsed || s.NetRx > math.MaxInt64 || s.NetTx > math.MaxInt64 {
			t.Fatalf("DecodeStats accepted an out-of-range sample %+v", s)
		}
		if !bytes.Equal(EncodeStats(s), p) {
			t.Fatalf("a decoded sample does not encode back to its bytes: %x", p)
		}
	})
}
