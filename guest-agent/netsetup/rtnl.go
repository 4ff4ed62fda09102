package netsetup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The few rtnetlink requests the agent makes, built by hand: a header, a fixed body
// (rtmsg or ifinfomsg) and attributes, each 4-byte aligned, in the host's byte order.

// attr is one rtnetlink attribute.
type attr struct {
	typ  uint16
	data []byte
}

func align4(n int) int { return (n + 3) &^ 3 }

// message encodes one netlink request: typ and flags in the header, body, then attrs.
func message(typ, flags uint16, seq uint32, body []byte, attrs ...attr) []byte {
	n := unix.NLMSG_HDRLEN + align4(len(body))
	for _, a := range attrs {
		n += align4(unix.SizeofRtAttr + len(a.data))
	}
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	// b[12:16], the port id, stays 0: the kernel fills in the sender's.
	off := unix.NLMSG_HDRLEN
	copy(b[off:], body)
	off += align4(len(body))
	for _, a := range attrs {
		ne.PutUint16(b[off:], uint16(unix.SizeofRtAttr+len(a.data)))
		ne.PutUint16(b[off+2:], a.typ)
		copy(b[off+unix.SizeofRtAttr:], a.data)
		off += align4(unix.SizeofRtAttr + len(a.data))
	}
	return b
}

// defaultRoute is RTM_NEWROUTE for 0.0.0.0/0 via gw out of interface ifindex, in the main
// table; it fails (EEXIST) rather than replace a default route already there.
func defaultRoute(seq uint32, gw netip.Addr, ifindex int) []byte {
	rtm := []byte{
		unix.AF_INET,           // rtm_family
		0,                      // rtm_dst_len: the default route
		0,                      // rtm_src_len
		0,                      // rtm_tos
		unix.RT_TABLE_MAIN,     // rtm_table
		unix.RTPROT_BOOT,       // rtm_protocol
		unix.RT_SCOPE_UNIVERSE, // rtm_scope
		unix.RTN_UNICAST,       // rtm_type
		0, 0, 0, 0,             // rtm_flags
	}
	gw4 := gw.As4()
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifindex))
	return message(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, seq,
		rtm, attr{unix.RTA_GATEWAY, gw4[:]}, attr{unix.RTA_OIF, oif})
}

// setLink is RTM_SETLINK on interface ifindex with attrs (IFLA_IFNAME, IFLA_ADDRESS).
func setLink(seq uint32, ifindex int, attrs ...attr) []byte {
	ifi := make([]byte, unix.SizeofIfInfomsg) // family, type, flags and change 0: keep them
	binary.NativeEndian.PutUint32(ifi[4:], uint32(ifindex))
	return message(unix.RTM_SETLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, ifi, attrs...)
}

// ack looks for the kernel's answer to request seq in b: found is false when b holds
// other messages only; err is the errno the answer carries (nil for an acknowledgement).
func ack(b []byte, seq uint32) (found bool, err error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err == nil && len(msgs) == 0 {
		err = errors.New("no message")
	}
	if err != nil {
		return false, fmt.Errorf("rtnetlink: unreadable answer (%d bytes): %w", len(b), err)
	}
	for _, m := range msgs {
		if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR {
			continue
		}
		if len(m.Data) < 4 {
			return true, fmt.Errorf("rtnetlink: error message of %d bytes, want at least 4", len(m.Data))
		}
		if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
			return true, syscall.Errno(-e)
		}
		return true, nil
	}
	return false, nil
}

// rtnlDo sends one request on a fresh NETLINK_ROUTE socket and waits for its
// acknowledgement.
func rtnlDo(req []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink bind: %w", err)
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink send: %w", err)
	}
	seq := binary.NativeEndian.Uint32(req[8:])
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("rtnetlink receive: %w", err)
		}
		// The kernel always answers an NLM_F_ACK request; the socket joined no group,
		// so anything else is unexpected and skipped.
		if found, err := ack(buf[:n], seq); found || err != nil {
			return err
		}
	}
}
