package chv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/voidbox/voidbox/runtime"
)

// rewriteConfig turns the config.json Cloud Hypervisor saved (the snapshot VM's
// whole VmConfig) into the one a restored VM is built from: every string that is
// oldDir (the saved VM's state directory) or a path under it now names the same file
// under the new VM's state directory, and the payload names cfg's kernel and
// initramfs. Fields voidbox does not know are kept as they are (numbers exactly), so
// a newer VMM's config survives. It refuses a config whose vsock socket or serial
// file does not end up as the new VM's (they would be shared with another VM), or
// whose memory or vCPUs are not cfg's.
func rewriteConfig(raw []byte, oldDir string, cfg runtime.VMConfig, p vmPaths) ([]byte, error) {
	if !filepath.IsAbs(oldDir) || filepath.Clean(oldDir) != oldDir || oldDir == "/" {
		return nil, fmt.Errorf("%s names the saved VM's state dir %q; want an absolute, clean directory other than /", snapMetaFile, oldDir)
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not a JSON VmConfig: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a JSON VmConfig: data after the object")
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON VmConfig: a %T, want an object", v)
	}
	rewritePaths(root, oldDir, p.Dir)

	for _, f := range []struct{ section, field, want string }{
		{"vsock", "socket", p.Vsock},
		{"serial", "file", p.Console},
	} {
		if got, _ := field(root, f.section, f.field).(string); got != f.want {
			return nil, fmt.Errorf("%s.%s is %q after moving %s to %s, want %q: the saved VM's device must be in its state dir, or two restored VMs would share it",
				f.section, f.field, got, oldDir, p.Dir, f.want)
		}
	}
	for _, f := range []struct {
		section, field string
		want           int64
		what           string
	}{
		{"memory", "size", int64(cfg.MemoryMB) << 20, fmt.Sprintf("%d MiB of memory", cfg.MemoryMB)},
		{"cpus", "boot_vcpus", int64(cfg.VCPUs), fmt.Sprintf("%d vCPUs", cfg.VCPUs)},
	} {
		n, _ := field(root, f.section, f.field).(json.Number)
		if got, err := n.Int64(); err != nil || got != f.want {
			return nil, fmt.Errorf("%s.%s is %v, want %d: vm %s asks for %s; restore it from a snapshot of that size", f.section, f.field, field(root, f.section, f.field), f.want, cfg.Name, f.what)
		}
	}
	payload, ok := root["payload"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("payload is %v, want an object naming the kernel", root["payload"])
	}
	// The VMM opens them again at restore; their contents are the snapshot's
	// (the snapshot key holds their digests), their paths may have moved.
	payload["kernel"] = cfg.Kernel
	if cfg.Initramfs != "" {
		payload["initramfs"] = cfg.Initramfs
	} else {
		delete(payload, "initramfs")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // byte for byte what was there, bar the paths
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode the restored VM's config: %w", err)
	}
	return buf.Bytes(), nil
}

// rewritePaths replaces, in place, every string in v that is oldDir or under it.
func rewritePaths(v any, oldDir, newDir string) any {
	switch t := v.(type) {
	case string:
		if rest, ok := strings.CutPrefix(t, oldDir); ok && (rest == "" || rest[0] == '/') {
			return newDir + rest
		}
	case map[string]any:
		for k, e := range t {
			t[k] = rewritePaths(e, oldDir, newDir)
		}
	case []any:
		for i, e := range t {
			t[i] = rewritePaths(e, oldDir, newDir)
		}
	}
	return v
}

// field is root[section][name], nil when either is missing.
func field(root map[string]any, section, name string) any {
	s, _ := root[section].(map[string]any)
	return s[name]
}

// writeJSONFile creates path (which must not exist) holding v.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readJSONFile reads path into v, refusing fields v does not have.
func readJSONFile(path string, v any) error {
	b, err := readBounded(path, maxSnapConfig)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
