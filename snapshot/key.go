package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
)

// FormatVersion is the layout of a snapshot directory and of the guest state in it as
// this voidbox writes them. Bump it when either changes incompatibly: every key changes,
// so old snapshots are never restored (and `voidbox snapshot rm --all` removes them).
const FormatVersion = 1

// Key is what a snapshot is valid for. A guest restored from a snapshot is the guest that
// was saved: its kernel, initramfs (and so its agent), memory size, vCPU count and device
// model must all be what the stage would have booted, or the stage gets a cold boot.
type Key struct {
	KernelSHA256    string `json:"kernel_sha256"`
	InitramfsSHA256 string `json:"initramfs_sha256"`
	MemoryMB        int    `json:"memory_mb"`
	VCPUs           int    `json:"vcpus"`
	// VMM names the VMM, its accelerator and its version ("qemu/tcg 7.2.22"): saved
	// device state is only loadable by the VMM that wrote it.
	VMM string `json:"vmm"`
}

var hexDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate reports the first field that cannot be part of a key.
func (k Key) Validate() error {
	if !hexDigest.MatchString(k.KernelSHA256) {
		return fmt.Errorf("snapshot key: kernel_sha256 %q is not 64 lower-case hex digits", k.KernelSHA256)
	}
	if !hexDigest.MatchString(k.InitramfsSHA256) {
		return fmt.Errorf("snapshot key: initramfs_sha256 %q is not 64 lower-case hex digits", k.InitramfsSHA256)
	}
	if k.MemoryMB < 64 || k.MemoryMB > 65536 {
		return fmt.Errorf("snapshot key: memory_mb %d is out of range 64..65536", k.MemoryMB)
	}
	if k.VCPUs < 1 || k.VCPUs > 64 {
		return fmt.Errorf("snapshot key: vcpus %d is out of range 1..64", k.VCPUs)
	}
	if k.VMM == "" || len(k.VMM) > 256 {
		return fmt.Errorf("snapshot key: vmm %q must be 1 to 256 bytes", k.VMM)
	}
	return nil
}

// ID is the key's directory name: 32 hex digits of the sha256 of the key and
// FormatVersion. Any change to any field gives another ID.
func (k Key) ID() string {
	b, err := json.Marshal(struct {
		Format int `json:"format"`
		Key
	}{FormatVersion, k})
	if err != nil {
		// A struct of strings and ints always marshals.
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// CheckID reports whether id can name a snapshot (what ID returns).
func CheckID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("snapshot id %q is not 32 lower-case hex digits (see voidbox snapshot ls)", id)
	}
	return nil
}
