package netsetup

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// LoopbackUp brings lo up; the kernel gives it 127.0.0.1/8 (and ::1) as it comes up.
// Nothing else in the guest does, and stages use loopback whether or not the box has a
// network.
func LoopbackUp() error {
	return withSocket(func(fd int) error { return linkUp(fd, "lo") })
}

// Rename renames interface from to `to` (which must be down: a new NIC is).
func Rename(from, to string) error {
	if from == to {
		return nil
	}
	if len(to) >= unix.IFNAMSIZ {
		return fmt.Errorf("rename %s: new name %q is longer than %d bytes", from, to, unix.IFNAMSIZ-1)
	}
	idx, err := ifindex(from)
	if err != nil {
		return err
	}
	if err := rtnlDo(setLink(1, idx, attr{unix.IFLA_IFNAME, append([]byte(to), 0)})); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return nil
}

// SetMAC sets interface name's hardware address (while it is down).
func SetMAC(name string, mac net.HardwareAddr) error {
	idx, err := ifindex(name)
	if err != nil {
		return err
	}
	if err := rtnlDo(setLink(1, idx, attr{unix.IFLA_ADDRESS, mac})); err != nil {
		return fmt.Errorf("%s: set MAC %s: %w", name, mac, err)
	}
	return nil
}

// Configure gives interface name c's MTU, address and prefix, brings it up and adds the
// default route via c.Gateway. It does not write /etc (WriteEtc does).
func Configure(name string, c Config) error {
	idx, err := ifindex(name)
	if err != nil {
		return err
	}
	err = withSocket(func(fd int) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ifr.SetUint32(uint32(c.MTU))
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("%s: set MTU %d: %w", name, c.MTU, err)
		}
		addr := c.Address.Addr().As4()
		if err := setInet4(fd, name, unix.SIOCSIFADDR, addr[:]); err != nil {
			return fmt.Errorf("%s: set address %s: %w", name, c.Address.Addr(), err)
		}
		mask := net.CIDRMask(c.Address.Bits(), 32)
		if err := setInet4(fd, name, unix.SIOCSIFNETMASK, mask); err != nil {
			return fmt.Errorf("%s: set netmask %s (/%d): %w", name, netip.AddrFrom4([4]byte(mask)), c.Address.Bits(), err)
		}
		return linkUp(fd, name)
	})
	if err != nil {
		return err
	}
	if err := rtnlDo(defaultRoute(1, c.Gateway, idx)); err != nil {
		return fmt.Errorf("%s: add default route via %s: %w", name, c.Gateway, err)
	}
	return nil
}

// withSocket runs f with an AF_INET datagram socket, the handle interface ioctls take.
func withSocket(f func(fd int) error) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for interface ioctls: %w", err)
	}
	defer unix.Close(fd)
	return f(fd)
}

func setInet4(fd int, name string, req uint, a []byte) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(a); err != nil {
		return err
	}
	return unix.IoctlIfreq(fd, req, ifr)
}

// linkUp sets IFF_UP on name, keeping its other flags.
func linkUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: read flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: bring up: %w", name, err)
	}
	return nil
}

// ifindex returns interface name's index.
func ifindex(name string) (int, error) {
	var idx int
	err := withSocket(func(fd int) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return fmt.Errorf("%s: find interface: %w", name, err)
		}
		idx = int(int32(ifr.Uint32()))
		return nil
	})
	return idx, err
}
