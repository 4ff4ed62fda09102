package proto

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// FwCfgName is the QEMU fw_cfg item that carries the BootConfig as JSON
// (-fw_cfg name=opt/voidbox/boot,file=...). The guest kernel shows it as
// /sys/firmware/qemu_fw_cfg/by_name/opt/voidbox/boot/raw, readable by root only.
// Delivered this way the per-VM secret is in a 0600 file the VMM reads, not on
// the VMM's command line, which every local user can read in /proc/PID/cmdline.
const FwCfgName = "opt/voidbox/boot"

// MaxBootJSON bounds the BootConfig JSON the guest accepts from fw_cfg. It is
// larger than what fits on a kernel command line (MaxBootArg) but keeps a
// hostile or broken VMM from making the agent allocate much.
const MaxBootJSON = 16 << 10

// JSON encodes c (defaults applied, validated) as the fw_cfg item's content.
func (c BootConfig) JSON() ([]byte, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode boot config: %w", err)
	}
	if len(js) > MaxBootJSON {
		return nil, fmt.Errorf("boot config is %d bytes of JSON, at most %d allowed: shorten the allow list", len(js), MaxBootJSON)
	}
	return js, nil
}

// ParseBootJSON decodes a BootConfig read from fw_cfg, as strictly as
// ParseKernelCmdline: bounded size, no unknown fields, no trailing data,
// defaults applied, validated.
func ParseBootJSON(js []byte) (BootConfig, error) {
	if len(js) > MaxBootJSON {
		return BootConfig{}, fmt.Errorf("boot config from fw_cfg %s is %d bytes, at most %d allowed", FwCfgName, len(js), MaxBootJSON)
	}
	return decodeBootJSON(js, "fw_cfg "+FwCfgName)
}

// decodeBootJSON is the common end of both boot config sources.
func decodeBootJSON(js []byte, source string) (BootConfig, error) {
	var c BootConfig
	if err := strictUnmarshal(js, &c); err != nil {
		return BootConfig{}, fmt.Errorf("%s JSON: %w", source, err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return BootConfig{}, err
	}
	return c, nil
}

// CutBootArg takes the voidbox.boot= word out of a kernel command line, for a
// VMM that delivers the BootConfig another way (QEMU's fw_cfg): it returns the
// command line without that word, and the BootConfig as JSON (nil when the
// command line has no such word). A malformed or repeated word is an error, so
// the secret is never passed on by accident.
func CutBootArg(cmdline string) (rest string, js []byte, err error) {
	rest, c, found, err := cutBootArg(cmdline)
	if err != nil || !found {
		return rest, nil, err
	}
	if js, err = c.JSON(); err != nil {
		return "", nil, err
	}
	return rest, js, nil
}

// cutBootArg finds the one voidbox.boot= word, anywhere in cmdline (the kernel
// also shows words after "--" in /proc/cmdline), decodes it, and returns the
// other words joined by single spaces; rest is cmdline unchanged when there is
// no such word.
func cutBootArg(cmdline string) (rest string, c BootConfig, found bool, err error) {
	words := strings.Fields(cmdline)
	kept := make([]string, 0, len(words))
	var enc string
	for _, w := range words {
		v, ok := strings.CutPrefix(w, bootArgKey)
		if !ok {
			kept = append(kept, w)
			continue
		}
		if found {
			return "", BootConfig{}, false, fmt.Errorf("kernel command line has more than one %s word", bootArgKey)
		}
		enc, found = v, true
	}
	if !found {
		return cmdline, BootConfig{}, false, nil
	}
	if len(enc) > MaxBootArg {
		return "", BootConfig{}, false, fmt.Errorf("%s value is %d bytes, at most %d allowed", bootArgKey, len(enc), MaxBootArg)
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", BootConfig{}, false, fmt.Errorf("%s value is not unpadded base64url: %w", bootArgKey, err)
	}
	if c, err = decodeBootJSON(raw, bootArgKey); err != nil {
		return "", BootConfig{}, false, err
	}
	return strings.Join(kept, " "), c, true, nil
}
