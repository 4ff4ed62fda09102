package netsetup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ResolvConf is /etc/resolv.conf for c: the VM's resolver and nothing else (no search
// domain, so a short name is not retried under some suffix the policy never saw).
func ResolvConf(c Config) string { return "nameserver " + c.DNS.String() + "\n" }

// Hosts is /etc/hosts for c: localhost, the guest's own name on its address, and the
// host's name (host.voidbox.internal) when there is one.
func Hosts(c Config) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if c.Hostname != "" {
		fmt.Fprintf(&b, "%s\t%s\n", c.Address.Addr(), c.Hostname)
	}
	if c.HostName != "" {
		fmt.Fprintf(&b, "%s\t%s\n", c.HostAddr, c.HostName)
	}
	return b.String()
}

// WriteEtc writes resolv.conf and hosts for c into etc (/etc in the guest), each mode
// 0644 and owned by root.
func WriteEtc(etc string, c Config) error {
	return writeEtc(etc, c, 0, 0)
}

func writeEtc(etc string, c Config, uid, gid int) error {
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("network config: %w", err)
	}
	for _, f := range []struct{ name, data string }{{"resolv.conf", ResolvConf(c)}, {"hosts", Hosts(c)}} {
		if err := replaceFile(filepath.Join(etc, f.name), []byte(f.data), uid, gid); err != nil {
			return fmt.Errorf("network config: %w", err)
		}
	}
	return nil
}

// replaceFile puts data at path, mode 0644 and owned by uid:gid, through a rename: what
// was there (a file, or a symlink into /run as some images ship) is replaced, never
// written through.
func replaceFile(path string, data []byte, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp makes it 0600
	}
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
