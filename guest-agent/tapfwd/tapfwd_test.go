package tapfwd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/network/frame"
	"golang.org/x/sys/unix"
)

// The TAP device is stood in for by a SOCK_SEQPACKET socketpair: like a TAP fd, each read
// returns one whole message and each write sends one. The host stream is a stream
// socketpair.

const testMTU = 1500

func socketPair(t *testing.T, typ int) (ours, theirs *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs = os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	return ours, theirs
}

// ethFrame is an n-byte frame whose bytes say which it is.
func ethFrame(n int, tag byte) []byte {
	f := bytes.Repeat([]byte{tag}, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x76, 0x62, 0, 0, 2, 0x08, 0x00})
	return f
}

type forwarder struct {
	guest, host *os.File // the far ends: the guest's kernel, the host's network
	done        chan error
	mu          sync.Mutex
	logged      []string
}

func startForward(t *testing.T) *forwarder {
	t.Helper()
	tap, guest := socketPair(t, unix.SOCK_SEQPACKET)
	stream, host := socketPair(t, unix.SOCK_STREAM)
	f := &forwarder{guest: guest, host: host, done: make(chan error, 1)}
	go func() {
		f.done <- Forward(tap, stream, testMTU, func(format string, args ...any) {
			f.mu.Lock()
			f.logged = append(f.logged, fmt.Sprintf(format, args...))
			f.mu.Unlock()
		})
	}()
	return f
}

func (f *forwarder) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Forward did not return within 10s of its stream breaking")
		return nil
	}
}

func TestForwardBothWays(t *testing.T) {
	f := startForward(t)
	r := frame.NewReader(f.host, MaxFrame(testMTU))
	buf := make([]byte, MaxFrame(testMTU))
	for _, n := range []int{frame.MinLen, 60, MaxFrame(testMTU)} {
		out := ethFrame(n, byte(n))
		if _, err := f.guest.Write(out); err != nil {
			t.Fatal(err)
		}
		got, err := r.Next(buf)
		if err != nil || !bytes.Equal(got, out) {
			t.Fatalf("a %d-byte frame from the guest reached the host as %d bytes (%v)", n, len(got), err)
		}
		in := ethFrame(n, byte(n)+1)
		if err := frame.Write(f.host, in); err != nil {
			t.Fatal(err)
		}
		rb := make([]byte, tapReadSize)
		m, err := f.guest.Read(rb)
		if err != nil || !bytes.Equal(rb[:m], in) {
			t.Fatalf("a %d-byte frame from the host reached the guest as %d bytes (%v)", n, m, err)
		}
	}
	f.host.Close()
	if err := f.wait(t); !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "host closed") {
		t.Errorf("host closed the stream: Forward returned %v, want an error wrapping io.EOF saying the host closed it", err)
	}
	// Forward closed the TAP: the guest's end sees it.
	if n, err := f.guest.Read(make([]byte, 64)); n != 0 || err == nil {
		t.Errorf("after Forward ended the TAP side still reads %d bytes, %v; want it closed", n, err)
	}
}

func TestForwardDropsOversizedGuestFrames(t *testing.T) {
	f := startForward(t)
	for _, n := range []int{MaxFrame(testMTU) + 1, 9000, frame.MinLen - 1} {
		if _, err := f.guest.Write(ethFrame(n, 1)); err != nil {
			t.Fatal(err)
		}
	}
	ok := ethFrame(100, 7)
	if _, err := f.guest.Write(ok); err != nil {
		t.Fatal(err)
	}
	got, err := frame.NewReader(f.host, MaxFrame(testMTU)).Next(make([]byte, MaxFrame(testMTU)))
	if err != nil || !bytes.Equal(got, ok) {
		t.Fatalf("after oversized frames, the next good one reached the host as %d bytes (%v); want it alone and intact", len(got), err)
	}
	f.mu.Lock()
	logged := f.logged
	f.mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], fmt.Sprintf("dropped a %d-byte frame", MaxFrame(testMTU)+1)) {
		t.Errorf("drops logged as %q; want one line naming the first dropped frame's size", logged)
	}
	f.host.Close()
	f.wait(t)
}

func TestForwardEndsOnOversizedHostFrame(t *testing.T) {
	f := startForward(t)
	if err := frame.Write(f.host, ethFrame(MaxFrame(testMTU)+1, 3)); err != nil {
		t.Fatal(err)
	}
	err := f.wait(t)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("length %d out of bounds", MaxFrame(testMTU)+1)) {
		t.Errorf("an oversized frame from the host: Forward returned %v, want the frame's length named", err)
	}
	if n, rerr := f.guest.Read(make([]byte, 64)); n != 0 || rerr == nil {
		t.Errorf("the oversized frame (or part of it) reached the guest: read %d bytes, %v", n, rerr)
	}
}

func TestForwardEndsWhenGuestSideFails(t *testing.T) {
	f := startForward(t)
	f.guest.Close() // the TAP side reads EOF
	if err := f.wait(t); err == nil || !strings.Contains(err.Error(), "TAP") {
		t.Errorf("TAP side closed: Forward returned %v, want an error naming the TAP", err)
	}
	// The host's stream was closed too, so the host sees the guest go away.
	c, err := net.FileConn(f.host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 8)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("host side after the forwarder ended: read %d bytes, %v; want EOF", n, err)
	}
}
