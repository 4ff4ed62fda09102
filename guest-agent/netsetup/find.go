package netsetup

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SysClassNet is where the kernel lists network interfaces, each with its address file.
const SysClassNet = "/sys/class/net"

// FindByMAC returns the interface in dir (SysClassNet) whose hardware address is mac, and
// the names of all interfaces it saw (for an error that says what was there instead). It
// fails when two interfaces have that address: configuring either could be the wrong one.
func FindByMAC(dir string, mac net.HardwareAddr) (name string, seen []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("list network interfaces: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "address"))
		if err != nil {
			continue // gone since the listing, or not an interface
		}
		seen = append(seen, e.Name())
		hw, err := net.ParseMAC(strings.TrimSpace(string(b)))
		if err != nil || !bytes.Equal(hw, mac) {
			continue
		}
		if name != "" {
			return "", seen, fmt.Errorf("network interfaces %s and %s both have MAC %s", name, e.Name(), mac)
		}
		name = e.Name()
	}
	sort.Strings(seen)
	return name, seen, nil
}

// WaitForMAC polls dir every interval until an interface with mac appears (a virtio-net
// NIC registers asynchronously once its driver probes) or wait passes.
func WaitForMAC(dir string, mac net.HardwareAddr, wait, interval time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		name, seen, err := FindByMAC(dir, mac)
		if err != nil || name != "" {
			return name, err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no network interface with MAC %s after %v (interfaces: %s): the VMM must give the virtio-net NIC this MAC, and the guest kernel needs virtio_net", mac, wait, strings.Join(seen, ", "))
		}
		time.Sleep(interval)
	}
}
