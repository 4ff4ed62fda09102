package netsetup

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

func bootNet() proto.NetConfig {
	return proto.NetConfig{MAC: "02:76:62:00:00:02", Address: "10.0.2.2/24", Gateway: "10.0.2.1", DNS: "10.0.2.3",
		MTU: 1400, HostName: "host.voidbox.internal", HostAddr: "10.0.2.254"}
}

func testConfig(t *testing.T) Config {
	t.Helper()
	c, err := FromBoot(bootNet(), "vmtest")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFromBoot(t *testing.T) {
	c := testConfig(t)
	want := Config{MAC: net.HardwareAddr{2, 0x76, 0x62, 0, 0, 2}, Address: netip.MustParsePrefix("10.0.2.2/24"),
		Gateway: netip.MustParseAddr("10.0.2.1"), DNS: netip.MustParseAddr("10.0.2.3"), MTU: 1400,
		HostName: "host.voidbox.internal", HostAddr: netip.MustParseAddr("10.0.2.254"), Hostname: "vmtest"}
	if c.String() != want.String() || c.MAC.String() != want.MAC.String() || c.Hostname != want.Hostname {
		t.Errorf("FromBoot = %+v, want %+v", c, want)
	}
	for field, mutate := range map[string]func(n *proto.NetConfig){
		"MAC":          func(n *proto.NetConfig) { n.MAC = "02:76:62:00:00:02:00:01" },
		"address":      func(n *proto.NetConfig) { n.Address = "fd00::2/64" },
		"gateway":      func(n *proto.NetConfig) { n.Gateway = "10.0.3.1" },
		"dns":          func(n *proto.NetConfig) { n.DNS = "dns" },
		"MTU":          func(n *proto.NetConfig) { n.MTU = 70000 },
		"host address": func(n *proto.NetConfig) { n.HostAddr = "" },
	} {
		n := bootNet()
		mutate(&n)
		if _, err := FromBoot(n, "vmtest"); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("bad %s: FromBoot error %v, want one naming the %s", field, err, field)
		}
	}
}

func TestEtcFiles(t *testing.T) {
	c := testConfig(t)
	if got, want := ResolvConf(c), "nameserver 10.0.2.3\n"; got != want {
		t.Errorf("resolv.conf\n%q\nwant\n%q", got, want)
	}
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.2\tvmtest\n10.0.2.254\thost.voidbox.internal\n"
	if got := Hosts(c); got != want {
		t.Errorf("hosts\n%q\nwant\n%q", got, want)
	}
	c.Hostname, c.HostName = "", ""
	if got, want := Hosts(c), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"; got != want {
		t.Errorf("hosts without names\n%q\nwant\n%q", got, want)
	}
}

func TestWriteEtcReplaces(t *testing.T) {
	c := testConfig(t)
	etc := filepath.Join(t.TempDir(), "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	// An image's resolv.conf may be a symlink elsewhere: it is replaced, not written through.
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("nameserver 8.8.8.8\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(etc, "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte("1.2.3.4 evil\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	syscall.Umask(0o077) // the files' mode must not depend on the umask
	defer syscall.Umask(0o022)
	if err := writeEtc(etc, c, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"resolv.conf": ResolvConf(c), "hosts": Hosts(c)} {
		p := filepath.Join(etc, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o644 {
			t.Errorf("%s: mode %v, want -rw-r--r--", name, fi.Mode())
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
			t.Errorf("%s: owner %d, want %d", name, st.Uid, os.Getuid())
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "nameserver 8.8.8.8\n" {
		t.Errorf("the symlink's target was written through: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(etc, ".*")); len(left) != 0 {
		t.Errorf("temporary files left in etc: %v", left)
	}
}

// fakeSysClassNet lays out dir/<name>/address for each interface.
func fakeSysClassNet(t *testing.T, dir string, ifaces map[string]string) {
	t.Helper()
	for name, mac := range ifaces {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "address"), []byte(mac+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindByMAC(t *testing.T) {
	mac := net.HardwareAddr{2, 0x76, 0x62, 0, 0, 2}
	dir := t.TempDir()
	fakeSysClassNet(t, dir, map[string]string{"lo": "00:00:00:00:00:00", "enp0s1": "52:54:00:12:34:56", "eth1": "02:76:62:00:00:02"})
	if err := os.WriteFile(filepath.Join(dir, "bonding_masters"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	name, seen, err := FindByMAC(dir, mac)
	if err != nil || name != "eth1" || strings.Join(seen, " ") != "enp0s1 eth1 lo" {
		t.Errorf("FindByMAC = %q %v %v, want eth1 among enp0s1 eth1 lo", name, seen, err)
	}
	// sysfs prints lower case; the boot config may not.
	if name, _, err := FindByMAC(dir, net.HardwareAddr{2, 0x76, 0x62, 0, 0, 2}); name != "eth1" || err != nil {
		t.Errorf("FindByMAC = %q %v", name, err)
	}
	fakeSysClassNet(t, dir, map[string]string{"eth2": "02:76:62:00:00:02"})
	if _, _, err := FindByMAC(dir, mac); err == nil || !strings.Contains(err.Error(), "eth1 and eth2") {
		t.Errorf("two interfaces with the MAC: %v, want an error naming both", err)
	}
}

func TestWaitForMAC(t *testing.T) {
	mac := net.HardwareAddr{2, 0x76, 0x62, 0, 0, 2}
	dir := t.TempDir()
	fakeSysClassNet(t, dir, map[string]string{"lo": "00:00:00:00:00:00"})
	go func() {
		time.Sleep(30 * time.Millisecond) // the NIC's driver probes after boot
		fakeSysClassNet(t, dir, map[string]string{"eth0": "02:76:62:00:00:02"})
	}()
	if name, err := WaitForMAC(dir, mac, 10*time.Second, time.Millisecond); name != "eth0" || err != nil {
		t.Errorf("WaitForMAC = %q %v, want the NIC that appeared late", name, err)
	}
	other := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	_, err := WaitForMAC(dir, other, 20*time.Millisecond, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), "eth0, lo") {
		t.Errorf("no such NIC: %v, want an error naming the MAC and the interfaces there are", err)
	}
}

func TestDefaultRouteMessage(t *testing.T) {
	b := defaultRoute(7, netip.MustParseAddr("10.0.2.1"), 3)
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	h := m.Header
	if h.Len != uint32(len(b)) || h.Type != unix.RTM_NEWROUTE || h.Seq != 7 ||
		h.Flags != unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL {
		t.Errorf("header %+v", h)
	}
	if len(m.Data) < unix.SizeofRtMsg {
		t.Fatalf("body of %d bytes, want an rtmsg", len(m.Data))
	}
	rtm := unix.RtMsg{Family: m.Data[0], Dst_len: m.Data[1], Table: m.Data[4], Protocol: m.Data[5], Scope: m.Data[6], Type: m.Data[7]}
	if rtm != (unix.RtMsg{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST}) {
		t.Errorf("rtmsg %+v", rtm)
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16][]byte{}
	for _, a := range attrs {
		got[a.Attr.Type] = a.Value
	}
	if len(got) != 2 || string(got[unix.RTA_GATEWAY]) != string([]byte{10, 0, 2, 1}) || binary.NativeEndian.Uint32(got[unix.RTA_OIF]) != 3 {
		t.Errorf("attributes %v, want RTA_GATEWAY 10.0.2.1 and RTA_OIF 3 only", got)
	}
}

func TestSetLinkMessage(t *testing.T) {
	b := setLink(9, 4, attr{unix.IFLA_IFNAME, []byte("eth0\x00")}, attr{unix.IFLA_ADDRESS, []byte{2, 0x76, 0x62, 0, 0, 2}})
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.Header.Type != unix.RTM_SETLINK || m.Header.Flags != unix.NLM_F_REQUEST|unix.NLM_F_ACK || m.Header.Seq != 9 {
		t.Errorf("header %+v", m.Header)
	}
	if idx := int32(binary.NativeEndian.Uint32(m.Data[4:])); idx != 4 || m.Data[0] != 0 {
		t.Errorf("ifinfomsg family %d index %d, want 0 and 4", m.Data[0], idx)
	}
	// ParseNetlinkRouteAttr knows RTM_NEWLINK's body, which RTM_SETLINK shares.
	m.Header.Type = unix.RTM_NEWLINK
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil || len(attrs) != 2 {
		t.Fatalf("attributes %v %v", attrs, err)
	}
	if attrs[0].Attr.Type != unix.IFLA_IFNAME || string(attrs[0].Value) != "eth0\x00" ||
		attrs[1].Attr.Type != unix.IFLA_ADDRESS || net.HardwareAddr(attrs[1].Value).String() != "02:76:62:00:00:02" {
		t.Errorf("attributes %+v", attrs)
	}
}

// nlError is the kernel's NLMSG_ERROR answer to request seq carrying errno (0: an ack).
func nlError(seq uint32, errno int32) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+4+unix.NLMSG_HDRLEN)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NLMSG_ERROR)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[16:], uint32(-errno))
	return b
}

func TestAck(t *testing.T) {
	if found, err := ack(nlError(5, 0), 5); !found || err != nil {
		t.Errorf("an acknowledgement: found=%v err=%v", found, err)
	}
	if found, err := ack(nlError(5, int32(unix.EEXIST)), 5); !found || err != unix.EEXIST {
		t.Errorf("an EEXIST answer: found=%v err=%v, want EEXIST", found, err)
	}
	if found, err := ack(nlError(4, int32(unix.EEXIST)), 5); found || err != nil {
		t.Errorf("another request's answer: found=%v err=%v, want it skipped", found, err)
	}
	if _, err := ack([]byte{1, 2, 3}, 5); err == nil {
		t.Error("a truncated answer was accepted")
	}
}
