// Package tapfwd is the guest half of the forwarder attachment (runtime.AttachForwarder):
// for a VMM that cannot give the guest a NIC on voidbox's network (Cloud Hypervisor has
// no stream netdev), the agent creates eth0 as a TAP device and pumps its Ethernet frames
// to and from a byte stream to the host (a vsock connection, or a virtio-serial port under
// QEMU), in package network/frame's length-prefixed framing: the framing of QEMU's
// `-netdev stream`, so the host serves both attachments with one reader.
//
// Frames from the host are bounded by the MTU plus an Ethernet header and one VLAN tag
// (frame.Reader refuses a longer one before reading it); frames from the TAP device longer
// than that are dropped here, since the host would drop the whole stream for one. The
// forwarder ends at the first broken stream and says why; it never takes the agent down.
package tapfwd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/voidbox/voidbox/network/frame"
	"golang.org/x/sys/unix"
)

// TunDevice is the TUN/TAP clone device.
const TunDevice = "/dev/net/tun"

// Create creates TAP interface name (down, no address) and returns its file: each read
// returns one Ethernet frame the guest sends, each write injects one. The interface lives
// as long as the file is open.
func Create(name string) (*os.File, error) {
	// Non-blocking, so that the file uses the runtime's poller and Close ends a Read.
	fd, err := unix.Open(TunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("create TAP %s: open %s: %w (the guest kernel needs TUN: CONFIG_TUN or the tun module in /etc/voidbox/modules)", name, TunDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TAP %s: TUNSETIFF: %w", name, err)
	}
	if got := ifr.Name(); got != name {
		unix.Close(fd)
		return nil, fmt.Errorf("create TAP %s: the kernel named it %q", name, got)
	}
	return os.NewFile(uintptr(fd), TunDevice+":"+name), nil
}

// MaxFrame is the longest frame the forwarder carries for an interface of MTU mtu: the
// host's bound (its Network's maxFrame), an Ethernet header and one 802.1Q tag beyond it.
func MaxFrame(mtu int) int { return mtu + 14 + 4 }

// tapReadSize is larger than any frame a TAP device without offloads hands out, so that an
// oversized frame is seen whole (and dropped) rather than truncated into a valid-looking one.
const tapReadSize = 64 << 10

// Forward pumps frames between tap and stream until either side fails, then closes both
// and returns why. logf reports dropped frames (once per Forward call). A clean end of the
// host's stream returns io.EOF wrapped with the direction.
func Forward(tap, stream io.ReadWriteCloser, mtu int, logf func(string, ...any)) error {
	max := MaxFrame(mtu)
	var once sync.Once
	errc := make(chan error, 2)
	stop := func(err error) {
		once.Do(func() {
			errc <- err
			tap.Close()
			stream.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		stop(toStream(tap, stream, max, logf))
	}()
	go func() {
		defer wg.Done()
		stop(toTap(stream, tap, max))
	}()
	wg.Wait()
	return <-errc
}

// toStream carries the guest's frames to the host.
func toStream(tap io.Reader, stream io.Writer, max int, logf func(string, ...any)) error {
	buf := make([]byte, tapReadSize)
	warned := false
	for {
		n, err := tap.Read(buf)
		if err != nil {
			return fmt.Errorf("forwarder: read from TAP: %w", err)
		}
		if n < frame.MinLen || n > max {
			if !warned {
				logf("forwarder: dropped a %d-byte frame from the TAP device (a frame is %d to %d bytes); further drops are not logged", n, frame.MinLen, max)
				warned = true
			}
			continue
		}
		if err := frame.Write(stream, buf[:n]); err != nil {
			return fmt.Errorf("forwarder: write to host: %w", err)
		}
	}
}

// toTap carries the host's frames to the guest.
func toTap(stream io.Reader, tap io.Writer, max int) error {
	r := frame.NewReader(stream, max)
	buf := make([]byte, max)
	for {
		f, err := r.Next(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("forwarder: the host closed the stream: %w", err)
			}
			return fmt.Errorf("forwarder: read from host: %w", err)
		}
		if _, err := tap.Write(f); err != nil {
			if errors.Is(err, syscall.EIO) {
				continue // the interface is down: a NIC drops what arrives then too
			}
			return fmt.Errorf("forwarder: write to TAP: %w", err)
		}
	}
}
