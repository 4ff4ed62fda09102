package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SysBlock is where the kernel lists block devices; a virtio-blk disk's serial (the
// VMM's disk ID) is in its "serial" file.
const SysBlock = "/sys/block"

// FindDisk returns the block device in sysBlock whose serial is serial ("" when none
// has it yet), and the names of the devices it saw, for a message that says what was
// there instead. Two devices with the serial are an error: either could be the wrong one.
func FindDisk(sysBlock, serial string) (name string, seen []string, err error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", nil, fmt.Errorf("list block devices: %w", err)
	}
	for _, e := range entries {
		seen = append(seen, e.Name())
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		if err != nil {
			continue // not virtio-blk (no serial), or gone since the listing
		}
		// virtio-blk's serial is a NUL-padded 20-byte field; trim what sysfs may add.
		if strings.TrimRight(string(b), "\x00\n ") != serial {
			continue
		}
		if name != "" {
			return "", seen, fmt.Errorf("block devices %s and %s both have serial %q", name, e.Name(), serial)
		}
		name = e.Name()
	}
	sort.Strings(seen)
	return name, seen, nil
}

// WaitDisk polls every interval until the disk with serial is listed in sysBlock and
// its node exists in devDir (virtio-blk probes asynchronously, and devtmpfs creates
// the node after that), and returns the node's path; it gives up after wait.
func WaitDisk(sysBlock, devDir, serial string, wait, interval time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		name, seen, err := FindDisk(sysBlock, serial)
		if err != nil {
			return "", err
		}
		if name != "" {
			dev := filepath.Join(devDir, name)
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			if name != "" {
				return "", fmt.Errorf("disk %q is %s, but %s did not appear within %v", serial, name, filepath.Join(devDir, name), wait)
			}
			return "", fmt.Errorf("no block device with serial %q after %v (block devices: %s): the VMM must attach the disk with this ID, and the guest kernel needs virtio_blk",
				serial, wait, strings.Join(seen, ", "))
		}
		time.Sleep(interval)
	}
}
