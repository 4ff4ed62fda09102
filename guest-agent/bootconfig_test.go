package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// fakeGuest lays out the files bootConfigFrom reads under a temp root.
func fakeGuest(t *testing.T, cmdline string, fwCfg bool, item []byte) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/cmdline", []byte(cmdline+"\n"))
	if fwCfg {
		write(filepath.Join(fwCfgDir, "rev"), []byte("3\n"))
		if item != nil {
			write(filepath.Join(fwCfgDir, "by_name", proto.FwCfgName, "raw"), item)
		}
	}
	return root
}

func bootConfigs(t *testing.T) (fw, cmd proto.BootConfig, fwJSON []byte, cmdArg string) {
	t.Helper()
	s1, _ := proto.NewSecret()
	s2, _ := proto.NewSecret()
	fw = proto.BootConfig{Secret: s1, Hostname: "from-fwcfg"}
	cmd = proto.BootConfig{Secret: s2, Hostname: "from-cmdline"}
	var err error
	if fwJSON, err = fw.JSON(); err != nil {
		t.Fatal(err)
	}
	if cmdArg, err = cmd.KernelArg(); err != nil {
		t.Fatal(err)
	}
	return fw, cmd, fwJSON, cmdArg
}

func TestBootConfigFromFwCfg(t *testing.T) {
	fw, _, fwJSON, cmdArg := bootConfigs(t)
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	// A voidbox.boot= planted on the command line next to fw_cfg is ignored.
	root := fakeGuest(t, "console=ttyS0 "+cmdArg, true, fwJSON)
	got, source, err := bootConfigFrom(root, logf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != fw.Secret || got.Hostname != "from-fwcfg" || !strings.Contains(source, "fw_cfg") {
		t.Errorf("got %q from %s, want the fw_cfg config", got.Hostname, source)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "ignoring voidbox.boot=") {
		t.Errorf("the ignored command-line config was not logged: %q", logs)
	}
}

func TestBootConfigFwCfgWithoutItemDoesNotFallBack(t *testing.T) {
	_, _, _, cmdArg := bootConfigs(t)
	root := fakeGuest(t, cmdArg, true, nil)
	_, _, err := bootConfigFrom(root, func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "not trusted when fw_cfg exists") {
		t.Fatalf("fw_cfg device without the item: %v; want a refusal, not the command line's config", err)
	}
}

func TestBootConfigFwCfgStrict(t *testing.T) {
	_, _, fwJSON, _ := bootConfigs(t)
	for name, item := range map[string][]byte{
		"unknown field": []byte(strings.Replace(string(fwJSON), "{", `{"evil":1,`, 1)),
		"oversized":     []byte(strings.Repeat(" ", proto.MaxBootJSON) + string(fwJSON)),
		"not json":      []byte("voidbox"),
	} {
		root := fakeGuest(t, "", true, item)
		if cfg, _, err := bootConfigFrom(root, func(string, ...any) {}); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
}

func TestBootConfigFromCmdlineWithoutFwCfg(t *testing.T) {
	_, cmd, _, cmdArg := bootConfigs(t)
	root := fakeGuest(t, "console=ttyS0 "+cmdArg+" panic=-1", false, nil)
	got, source, err := bootConfigFrom(root, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != cmd.Secret || source != "the kernel command line" {
		t.Errorf("got %q from %s, want the command line's config", got.Hostname, source)
	}
	root = fakeGuest(t, "console=ttyS0", false, nil)
	if _, _, err := bootConfigFrom(root, func(string, ...any) {}); err == nil || !strings.Contains(err.Error(), "CONFIG_FW_CFG_SYSFS") {
		t.Errorf("no config anywhere: %v; want an error that names both sources", err)
	}
}
