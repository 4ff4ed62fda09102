package netsetup

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/tapfwd"
	"github.com/voidbox/voidbox/network/frame"
	"golang.org/x/sys/unix"
)

// TestConfigureInPrivateNetns runs the real ioctls and rtnetlink requests against the
// host's kernel, in a network namespace of its own (one locked thread's, which dies with
// it), so that nothing on the host changes: lo comes up, a TAP device from package tapfwd
// gets the MAC, the name eth0, the MTU, the address and the default route, and its
// forwarder carries the guest's first frame (an ARP request for the gateway) to the host.
func TestConfigureInPrivateNetns(t *testing.T) {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's end ends the thread, and the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w: %v", errNoNetns, err)
			return
		}
		errc <- configureInNetns(testConfig(t))
	}()
	err := <-errc
	if errors.Is(err, errNoNetns) {
		t.Skipf("no private network namespace here (needs CAP_SYS_ADMIN): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var errNoNetns = errors.New("unshare(CLONE_NEWNET)")

// configureInNetns runs on the namespace's thread; it returns what went wrong.
func configureInNetns(c Config) error {
	// A new namespace's lo is down: binding 127.0.0.1 works, connecting does not.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	if conn, err := net.Dial("tcp", l.Addr().String()); err == nil {
		conn.Close()
		return errors.New("loopback works before LoopbackUp: the namespace is not a fresh one")
	}
	if err := LoopbackUp(); err != nil {
		return err
	}
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return fmt.Errorf("after LoopbackUp, connect to %s: %v", l.Addr(), err)
	}
	conn.Close()

	tap, err := tapfwd.Create("vbtest0")
	if err != nil {
		return err
	}
	if err := SetMAC("vbtest0", c.MAC); err != nil {
		return err
	}
	if err := Rename("vbtest0", Interface); err != nil {
		return err
	}
	if err := Configure(Interface, c); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(Interface)
	if err != nil {
		return err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return err
	}
	var v4 []string // the kernel adds an IPv6 link-local address of its own
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			v4 = append(v4, a.String())
		}
	}
	if ifc.MTU != c.MTU || ifc.HardwareAddr.String() != c.MAC.String() || ifc.Flags&net.FlagUp == 0 ||
		strings.Join(v4, " ") != c.Address.String() {
		return fmt.Errorf("eth0 is %+v with %v; want MTU %d, MAC %s, up, IPv4 address %s only", ifc, addrs, c.MTU, c.MAC, c.Address)
	}
	routes, err := os.ReadFile("/proc/thread-self/net/route")
	if err != nil {
		return err
	}
	// Iface Destination Gateway Flags ...: the default route, via 10.0.2.1 (hex, in the
	// host's byte order), up and through a gateway.
	if !strings.Contains(string(routes), "eth0\t00000000\t0102000A\t0003\t") {
		return fmt.Errorf("no default route via %s on eth0 in /proc/net/route:\n%s", c.Gateway, routes)
	}
	if err := Configure(Interface, c); err == nil || !strings.Contains(err.Error(), "default route") {
		return fmt.Errorf("a second default route: Configure returned %v, want an error naming the default route", err)
	}
	if err := Configure("nosuch0", c); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		return fmt.Errorf("Configure of a missing interface returned %v, want an error naming it", err)
	}
	return forwardsFirstFrame(tap, c)
}

// forwardsFirstFrame runs the forwarder on the TAP and checks that a datagram for the
// gateway makes the kernel's ARP request reach the host, from eth0's MAC and address.
func forwardsFirstFrame(tap *os.File, c Config) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	stream, host := os.NewFile(uintptr(fds[0]), "stream"), os.NewFile(uintptr(fds[1]), "host")
	defer host.Close()
	done := make(chan error, 1)
	go func() { done <- tapfwd.Forward(tap, stream, c.MTU, func(string, ...any) {}) }()
	u, err := net.Dial("udp", net.JoinHostPort(c.Gateway.String(), "53"))
	if err != nil {
		return err
	}
	defer u.Close()
	if _, err := u.Write([]byte("query")); err != nil {
		return err
	}
	host.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := frame.NewReader(host, tapfwd.MaxFrame(c.MTU))
	buf := make([]byte, tapfwd.MaxFrame(c.MTU))
	gw, self := c.Gateway.As4(), c.Address.Addr().As4()
	for {
		f, err := r.Next(buf)
		if err != nil {
			return fmt.Errorf("no ARP request for the gateway reached the host: %v", err)
		}
		// Ethernet type ARP; sender MAC and IP; target IP.
		if len(f) >= 42 && f[12] == 0x08 && f[13] == 0x06 && bytes.Equal(f[22:28], c.MAC) &&
			bytes.Equal(f[28:32], self[:]) && bytes.Equal(f[38:42], gw[:]) {
			break
		}
	}
	host.Close()
	select {
	case err := <-done:
		if err == nil {
			return errors.New("the forwarder ended without saying why")
		}
	case <-time.After(10 * time.Second):
		return errors.New("the forwarder did not end when the host closed its stream")
	}
	return nil
}
