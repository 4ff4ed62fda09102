package proto

import (
	"fmt"
	"path"
	"strings"
)

// Mount kinds.
const (
	// MountVirtiofs is a host directory shared over virtio-fs; Source is its tag.
	MountVirtiofs = "virtiofs"
	// MountDisk is a read-only virtio-blk disk holding an ext4 file system (an OCI
	// image's root file system, e.g. a skill's); Source is the disk's serial.
	MountDisk = "disk"
)

// MaxMounts bounds the mounts a boot config may carry.
const MaxMounts = 64

// Mount is a file system the agent mounts where stages see it, before the first exec.
type Mount struct {
	Kind     string `json:"k"`
	Source   string `json:"s"` // the virtio-fs tag, or the disk's serial (runtime.Disk.ID)
	Path     string `json:"p"` // where stages see it (CheckMountPath)
	ReadOnly bool   `json:"ro,omitempty"`
}

// reservedPaths are guest paths a mount may neither be nor be under: the kernel's
// file systems, the agent's run-time state, and the agent itself.
var reservedPaths = []string{"/proc", "/sys", "/dev", "/run", "/init", "/etc/voidbox"}

// shadowedPaths are guest paths a mount may be under but not replace: stages'
// writable file systems, which hold /workspace/input.
var shadowedPaths = []string{"/workspace", "/tmp"}

// CheckMountPath reports what is wrong with p as a guest mount point: it must be
// absolute and clean, not the root, and not shadow the guest's own file systems.
func CheckMountPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("guest path %q must be absolute (start with /)", p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("guest path %q must not contain a NUL byte", p)
	case len(p) > 1024:
		return fmt.Errorf("guest path is %d bytes long, at most 1024", len(p))
	case path.Clean(p) != p:
		return fmt.Errorf("guest path %q must be clean (no \"..\", \".\", \"//\" or trailing \"/\"): %q", p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("guest path %q must not be the guest root / (use image= for a root file system)", p)
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("guest path %q must not be or be under %s, which the guest needs for itself", p, r)
		}
	}
	for _, s := range shadowedPaths {
		if p == s {
			return fmt.Errorf("guest path %q would hide the stage's %s; mount under it instead (e.g. %s/data)", p, s, s)
		}
	}
	return nil
}

// serialOK reports whether s can be a virtio-blk serial or a virtio-fs tag: short,
// and letters, digits, '-' and '_' only (both VMMs' option syntax, and sysfs).
func serialOK(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func validateMounts(root string, ms []Mount) error {
	if root != "" && !serialOK(root) {
		return fmt.Errorf("boot config root disk %q: want 1 to 20 letters, digits, '-' or '_'", root)
	}
	if len(ms) > MaxMounts {
		return fmt.Errorf("boot config has %d mounts, at most %d", len(ms), MaxMounts)
	}
	seen := map[string]bool{}
	for i, m := range ms {
		if m.Kind != MountVirtiofs && m.Kind != MountDisk {
			return fmt.Errorf("boot config mount %d: kind %q, want %q or %q", i, m.Kind, MountVirtiofs, MountDisk)
		}
		if !serialOK(m.Source) {
			return fmt.Errorf("boot config mount %d: source %q: want 1 to 20 letters, digits, '-' or '_'", i, m.Source)
		}
		if m.Kind == MountDisk && !m.ReadOnly {
			return fmt.Errorf("boot config mount %d: disk %s must be read-only", i, m.Source)
		}
		if err := CheckMountPath(m.Path); err != nil {
			return fmt.Errorf("boot config mount %d: %w", i, err)
		}
		if seen[m.Path] {
			return fmt.Errorf("boot config mount %d: guest path %s is mounted twice", i, m.Path)
		}
		seen[m.Path] = true
	}
	return nil
}
