package chv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

func shareConfig(t *testing.T) runtime.VMConfig {
	cfg := testConfig(t)
	cfg.Shares = []runtime.Share{{Tag: "data", HostPath: t.TempDir()}}
	return cfg
}

func TestCheckConfigDefaults(t *testing.T) {
	cfg, err := checkConfig(runtime.VMConfig{Name: "b", Kernel: "/k", StateDir: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryMB != defaultMemoryMB || cfg.VCPUs != defaultVCPUs {
		t.Errorf("defaults: %d MiB, %d vCPUs", cfg.MemoryMB, cfg.VCPUs)
	}
	vc := buildVMConfig(cfg, vmPaths{}, 3, nil)
	if vc.Memory.Shared || vc.FS != nil {
		t.Errorf("memory shared or fs set without shares: %+v", vc)
	}
	if vc.Payload.Cmdline != cmdlinePrefix {
		t.Errorf("cmdline %q", vc.Payload.Cmdline)
	}
}

func TestCheckConfigRejects(t *testing.T) {
	base := runtime.VMConfig{Name: "b", Kernel: "/k", StateDir: "/s"}
	cases := map[string]struct {
		mut  func(*runtime.VMConfig)
		want string
	}{
		"no kernel":     {func(c *runtime.VMConfig) { c.Kernel = "" }, "VMConfig.Kernel is empty"},
		"negative mem":  {func(c *runtime.VMConfig) { c.MemoryMB = -1 }, "MemoryMB is -1"},
		"too many cpus": {func(c *runtime.VMConfig) { c.VCPUs = 1000 }, "VCPUs is 1000; want 1 to 254"},
		"network NIC":   {func(c *runtime.VMConfig) { c.NetworkSocket = "/n.sock" }, "no unix-stream netdev"},
		"comma socket": {func(c *runtime.VMConfig) {
			c.NetworkSocket, c.NetworkAttach = "/n,x.sock", runtime.AttachForwarder
		}, "without commas"},
		"empty tag": {func(c *runtime.VMConfig) { c.Shares = []runtime.Share{{HostPath: "/d"}} }, "Shares[0].Tag is empty"},
		"long tag": {func(c *runtime.VMConfig) {
			c.Shares = []runtime.Share{{Tag: strings.Repeat("t", 37), HostPath: "/d"}}
		}, "at most 36"},
		"dup tag": {func(c *runtime.VMConfig) {
			c.Shares = []runtime.Share{{Tag: "a", HostPath: "/d"}, {Tag: "a", HostPath: "/e"}}
		}, `Shares[1].Tag "a" is used twice`},
		"relative path": {func(c *runtime.VMConfig) { c.Shares = []runtime.Share{{Tag: "a", HostPath: "d"}} }, "not absolute"},
	}
	for name, tc := range cases {
		cfg := base
		tc.mut(&cfg)
		_, err := checkConfig(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
	if _, err := checkConfig(runtime.VMConfig{Kernel: "/k", NetworkSocket: "/n"}); !errors.Is(err, ErrNetworkUnsupported) {
		t.Errorf("network error does not wrap ErrNetworkUnsupported: %v", err)
	}
}

func TestPathsIn(t *testing.T) {
	if _, err := pathsIn(""); err == nil {
		t.Error("empty StateDir accepted")
	}
	long := "/" + strings.Repeat("d", 100)
	if _, err := pathsIn(long); err == nil || !strings.Contains(err.Error(), "too long for unix sockets") {
		t.Errorf("long StateDir: %v", err)
	}
	p, err := pathsIn("/run/vb/1")
	if err != nil || p.API != filepath.Join("/run/vb/1", "api.sock") || p.Events != "/run/vb/1/events.json" {
		t.Errorf("paths %+v, %v", p, err)
	}
}

func TestMakePrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makePrivate(dir); err != nil {
		t.Fatalf("a 0755 dir of ours: %v", err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("state dir left at %v; its API socket would give the secret away", st.Mode().Perm())
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := makePrivate(link); err == nil || !strings.Contains(err.Error(), "must be a directory of this user") {
		t.Errorf("symlink as the state dir: %v", err)
	}
	if os.Geteuid() == 0 {
		other := t.TempDir()
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := makePrivate(other); err == nil {
			t.Error("took over another user's directory as the state dir")
		}
	}
}
