package proto

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// BootVersion is the BootConfig schema version this package writes and accepts.
const BootVersion = 1

// bootArgKey prefixes the kernel command-line word carrying the BootConfig.
const bootArgKey = "voidbox.boot="

// MaxBootArg bounds the whole voidbox.boot= word: kernel command lines are short
// (2048 bytes on x86 by default) and share space with the console and init options.
const MaxBootArg = 1536

// maxCmdline bounds how much of /proc/cmdline the guest is willing to scan.
const maxCmdline = 64 << 10

// DefaultUID and DefaultGID are the unprivileged stage user's ids in the guest.
const (
	DefaultUID = 1000
	DefaultGID = 1000
)

// Rlimits are per-process resource limits for stage processes; 0 keeps the default.
type Rlimits struct {
	NOFILE uint64 `json:"nofile,omitempty"` // open files
	NPROC  uint64 `json:"nproc,omitempty"`  // processes of the stage uid
	FSIZE  uint64 `json:"fsize,omitempty"`  // largest file written, bytes
	CPU    uint64 `json:"cpu,omitempty"`    // CPU seconds
}

// BootConfig is what the host tells the guest agent at boot, before any connection:
// the handshake secret and the policy every stage process runs under.
type BootConfig struct {
	Version  int      `json:"v"`
	Secret   string   `json:"s"` // hex of 32 random bytes (NewSecret)
	Hostname string   `json:"h,omitempty"`
	Allow    []string `json:"a,omitempty"` // command allowlist; empty allows any command
	UID      int      `json:"u,omitempty"` // 0 here means DefaultUID: stages never run as root
	GID      int      `json:"g,omitempty"` // 0 here means DefaultGID
	Rlimits  Rlimits  `json:"r,omitempty"`
	Limits   Limits   `json:"l,omitzero"`  // the stage cgroup and tmpfs sizes (LimitsForBox)
	UnixTime int64    `json:"t,omitempty"` // host wall clock (seconds) to set the guest clock from
	Debug    bool     `json:"d,omitempty"` // verbose agent logging on the console
	// Net configures eth0 before the first exec; nil means the box has no network.
	Net *NetConfig `json:"n,omitempty"`
	// Root is the serial of the read-only disk (ext4) whose file system stages see as
	// "/", under a tmpfs overlay; "" keeps the initramfs (busybox) as their root.
	Root string `json:"rt,omitempty"`
	// Mounts are mounted where stages see them (inside Root when it is set), in order.
	Mounts []Mount `json:"mt,omitempty"`
	// Forwards are guest loopback ports the agent listens on before the first exec
	// and carries to the host over the agent session (forward.go).
	Forwards []Forward `json:"fw,omitempty"`
	// Warm boots the agent to be snapshotted: its first exchange must be the host's
	// re-key (rekey.go), which replaces Secret, Hostname, Allow and Debug.
	Warm bool `json:"w,omitempty"`
}

// NewSecret returns a fresh per-VM handshake secret: hex of 32 random bytes.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate agent secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// WithDefaults returns c with zero UID/GID replaced by the stage user's ids.
func (c BootConfig) WithDefaults() BootConfig {
	if c.UID == 0 {
		c.UID = DefaultUID
	}
	if c.GID == 0 {
		c.GID = DefaultGID
	}
	if c.Version == 0 {
		c.Version = BootVersion
	}
	return c
}

// Validate reports the first field that would make the guest unsafe or unusable.
func (c BootConfig) Validate() error {
	if c.Version != BootVersion {
		return fmt.Errorf("boot config version %d is not supported (want %d): rebuild the guest image or the host", c.Version, BootVersion)
	}
	if _, err := decodeSecret(c.Secret); err != nil {
		return err
	}
	if len(c.Hostname) > 64 {
		return fmt.Errorf("boot config hostname is %d bytes, at most 64 allowed", len(c.Hostname))
	}
	for _, r := range c.Hostname {
		if !(r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("boot config hostname %q: only letters, digits, '-' and '.' are allowed", c.Hostname)
		}
	}
	if len(c.Allow) > 256 {
		return fmt.Errorf("boot config allow list has %d entries, at most 256 allowed", len(c.Allow))
	}
	for _, a := range c.Allow {
		if a == "" || strings.ContainsAny(a, "\x00") {
			return fmt.Errorf("boot config allow entry %q must be a non-empty command name or path", a)
		}
	}
	if c.UID < 0 || c.GID < 0 || c.UID > 1<<31-2 || c.GID > 1<<31-2 {
		return fmt.Errorf("boot config uid %d / gid %d out of range", c.UID, c.GID)
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if err := validateMounts(c.Root, c.Mounts); err != nil {
		return err
	}
	if err := validateForwards(c.Forwards); err != nil {
		return err
	}
	return c.Net.validate()
}

func decodeSecret(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("agent secret must be 64 hex digits (32 bytes), got %d characters", len(s))
	}
	return b, nil
}

// KernelArg encodes c as the kernel command-line word voidbox.boot=<base64url JSON>.
func (c BootConfig) KernelArg() (string, error) {
	js, err := c.JSON()
	if err != nil {
		return "", err
	}
	arg := bootArgKey + base64.RawURLEncoding.EncodeToString(js)
	if len(arg) > MaxBootArg {
		return "", fmt.Errorf("boot config is %d bytes on the kernel command line, at most %d fit: shorten the allow list or hostname", len(arg), MaxBootArg)
	}
	return arg, nil
}

// ParseKernelCmdline finds voidbox.boot= in a kernel command line (e.g. /proc/cmdline)
// and returns the validated BootConfig with defaults applied.
func ParseKernelCmdline(cmdline string) (BootConfig, error) {
	if len(cmdline) > maxCmdline {
		return BootConfig{}, fmt.Errorf("kernel command line is %d bytes, at most %d scanned", len(cmdline), maxCmdline)
	}
	_, c, found, err := cutBootArg(cmdline)
	if err != nil {
		return BootConfig{}, err
	}
	if !found {
		return BootConfig{}, fmt.Errorf("kernel command line has no %s word: the VM was not booted by voidbox", bootArgKey)
	}
	return c, nil
}
