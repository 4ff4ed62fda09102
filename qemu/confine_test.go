package qemu

import (
	"encoding/base64"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/runtime"
)

// Every path that sits inside a comma-separated QEMU option has its commas
// doubled; options that take their value whole keep it as is.
func TestBuildArgsEscapesCommas(t *testing.T) {
	dir := "/tmp/a,b/voidbox-1-2"
	cfg := runtime.VMConfig{Name: "x", Kernel: "/k,1", Initramfs: "/i,2", MemoryMB: 256, VCPUs: 1,
		Shares: []runtime.Share{{Tag: "data", HostPath: "/h"}}, NetworkSocket: "/n,et.sock", MAC: "52:54:00:12:34:56"}
	l := launch{accel: "tcg", dir: dir, bootConfig: true, runAs: "nobody", release: qemuRelease{7, 2}}
	args, err := buildArgs(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	for _, want := range []string{
		"-kernel /k,1 -initrd /i,2",
		"path=/tmp/a,,b/voidbox-1-2/console.sock",
		"path=/tmp/a,,b/voidbox-1-2/qmp.sock,server=on",
		"path=/tmp/a,,b/voidbox-1-2/agent.sock,server=on",
		"path=/tmp/a,,b/voidbox-1-2/fs0.sock",
		"addr.path=/n,,et.sock",
		"-fw_cfg name=opt/voidbox/boot,file=/tmp/a,,b/voidbox-1-2/boot.json",
		"-chroot /tmp/a,b/voidbox-1-2 -runas nobody",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	// No key=value option may carry a single comma inside a value.
	for i, a := range args {
		if i > 0 && (args[i-1] == "-chroot" || args[i-1] == "-kernel" || args[i-1] == "-initrd" || args[i-1] == "-append") {
			continue
		}
		if strings.Contains(strings.ReplaceAll(a, ",,", ""), "a,b") {
			t.Errorf("argument %q has an unescaped comma in a path", a)
		}
	}
}

func TestConfineArgsByRelease(t *testing.T) {
	for _, c := range []struct {
		r    qemuRelease
		want string
	}{
		{qemuRelease{7, 2}, "-chroot /s,d -runas vb"},
		{qemuRelease{8, 0}, "-chroot /s,d -runas vb"},
		{qemuRelease{8, 1}, "-run-with chroot=/s,,d -runas vb"},
		{qemuRelease{9, 0}, "-run-with chroot=/s,,d -runas vb"},
		{qemuRelease{9, 1}, "-run-with chroot=/s,,d,user=vb"},
		{qemuRelease{10, 0}, "-run-with chroot=/s,,d,user=vb"},
	} {
		if got := strings.Join(confineArgs(c.r, "/s,d", "vb"), " "); got != c.want {
			t.Errorf("QEMU %d.%d: %q, want %q", c.r.major, c.r.minor, got, c.want)
		}
	}
	if r, err := parseRelease("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"); err != nil || r != (qemuRelease{7, 2}) {
		t.Errorf("parseRelease = %v, %v", r, err)
	}
	if _, err := parseRelease("qemu, no version"); err == nil {
		t.Error("parseRelease accepted a line without a version")
	}
	// A QEMU that still has to switch user may make set*id calls; otherwise not.
	if !strings.Contains(sandboxArg(false), "elevateprivileges=deny") || !strings.Contains(sandboxArg(true), "elevateprivileges=allow") {
		t.Errorf("sandboxArg: %q / %q", sandboxArg(false), sandboxArg(true))
	}
}

func TestDropUser(t *testing.T) {
	users := map[string]*user.User{
		"voidbox-vmm": {Username: "voidbox-vmm", Uid: "998", Gid: "998"},
		"nobody":      {Username: "nobody", Uid: "65534", Gid: "65534"},
	}
	lookup := func(have ...string) func(string) (*user.User, error) {
		return func(name string) (*user.User, error) {
			for _, h := range have {
				if h == name {
					return users[name], nil
				}
			}
			return nil, user.UnknownUserError(name)
		}
	}
	if u, err := dropUser(1000, lookup("voidbox-vmm", "nobody")); u != "" || err != nil {
		t.Errorf("not root: %q, %v; want no drop (QEMU already runs unprivileged)", u, err)
	}
	if u, err := dropUser(0, lookup("voidbox-vmm", "nobody")); u != "voidbox-vmm" || err != nil {
		t.Errorf("root with the dedicated user: %q, %v", u, err)
	}
	if u, err := dropUser(0, lookup("nobody")); u != "nobody" || err != nil {
		t.Errorf("root without the dedicated user: %q, %v; want nobody", u, err)
	}
	if _, err := dropUser(0, lookup()); err == nil || !strings.Contains(err.Error(), "useradd --system") {
		t.Errorf("root and no user: %v; want an error saying how to create one", err)
	}
	if u, err := RunAsUser(); err != nil || (os.Geteuid() == 0) != (u != "") {
		t.Errorf("RunAsUser as uid %d = %q, %v", os.Geteuid(), u, err)
	}
	users["voidbox-vmm"] = &user.User{Username: "voidbox-vmm", Uid: "0", Gid: "0"}
	if _, err := dropUser(0, lookup("voidbox-vmm")); err == nil {
		t.Error("accepted a VMM user with uid 0")
	}
}

func TestPrepareLaunchMovesSecretToFwCfg(t *testing.T) {
	secret, _ := proto.NewSecret()
	arg, err := proto.BootConfig{Secret: secret, Hostname: "h"}.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := launch{accel: "tcg", dir: dir}
	cfg, err := prepareLaunch(runtime.VMConfig{Name: "x", Kernel: "/k", Initramfs: "/i", Cmdline: arg + " voidbox.test=hang", MemoryMB: 256, VCPUs: 1}, &l, "")
	if err != nil {
		t.Fatal(err)
	}
	if !l.bootConfig || cfg.Cmdline != "voidbox.test=hang" {
		t.Fatalf("bootConfig %v, cmdline %q: want the boot word moved out", l.bootConfig, cfg.Cmdline)
	}
	args, err := buildArgs(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(args, " ")
	blob := strings.TrimPrefix(arg, "voidbox.boot=")
	for _, leak := range []string{secret, blob, "voidbox.boot="} {
		if strings.Contains(all, leak) {
			t.Errorf("QEMU's command line carries %.20q...:\n%s", leak, all)
		}
	}
	if raw, _ := base64.RawURLEncoding.DecodeString(blob); strings.Contains(all, string(raw)) {
		t.Errorf("QEMU's command line carries the boot JSON")
	}
	path := filepath.Join(dir, bootConfigFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("boot config file: %v, %v; want mode 0600", st, err)
	}
	js, _ := os.ReadFile(path)
	if got, err := proto.ParseBootJSON(js); err != nil || got.Secret != secret {
		t.Errorf("boot config file does not hold the config: %v", err)
	}
	if os.Geteuid() == 0 && (l.runAs == "" || l.release == (qemuRelease{})) {
		t.Errorf("running as root, QEMU does not drop privileges: runAs %q release %v", l.runAs, l.release)
	}
	// A malformed boot word is refused rather than passed on.
	l2 := launch{accel: "tcg", dir: t.TempDir()}
	if _, err := prepareLaunch(runtime.VMConfig{Cmdline: "voidbox.boot=!!"}, &l2, ""); err == nil {
		t.Error("prepareLaunch passed on a malformed voidbox.boot= word")
	}
	if _, err := os.Stat(filepath.Join(l2.dir, bootConfigFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused boot word left %s behind", bootConfigFile)
	}
}
