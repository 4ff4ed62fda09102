package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

func TestSnapshotArgs(t *testing.T) {
	cfg := runtime.VMConfig{Name: "s", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1}
	boot, err := buildArgs(cfg, launch{accel: "tcg", dir: "/s", snap: snapLaunch{memFile: "/snap/a,b/memory", shared: true}})
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(boot, " ")
	for _, want := range []string{"microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem", "memory-backend-file,id=mem,size=256M,mem-path=/snap/a,,b/memory,share=on"} {
		if !strings.Contains(joined, want) {
			t.Errorf("snapshot boot args lack %q:\n%s", want, joined)
		}
	}
	if slices.Contains(boot, "-incoming") {
		t.Errorf("a snapshot boot has -incoming: %s", joined)
	}
	state, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	l := launch{accel: "tcg", dir: "/s", snap: snapLaunch{memFile: "/snap/memory", state: state}}
	restore, err := buildArgs(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	joined = strings.Join(restore, " ")
	// Private: a stage's writes never reach the snapshot.
	if !strings.Contains(joined, "mem-path=/snap/memory,share=off") || !strings.Contains(joined, "-incoming defer") {
		t.Errorf("restore args lack the private memory file or -incoming defer:\n%s", joined)
	}
	if files := l.extraFiles(); len(files) != 1 || files[0] != state {
		t.Errorf("extraFiles = %v, want the state file as fd %d", files, migrationFD)
	}
	if files := (launch{}).extraFiles(); files != nil {
		t.Errorf("a cold boot passes files %v", files)
	}
}

func TestSnapshotArgsRefuseBootDevices(t *testing.T) {
	base := runtime.VMConfig{Name: "s", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1}
	for name, mod := range map[string]func(*runtime.VMConfig){
		"shares":  func(c *runtime.VMConfig) { c.Shares = []runtime.Share{{Tag: "t", HostPath: "/h"}} },
		"disks":   func(c *runtime.VMConfig) { c.Disks = []runtime.Disk{{ID: "root", Path: "/d"}} },
		"network": func(c *runtime.VMConfig) { c.NetworkSocket, c.MAC = "/n.sock", "52:54:00:12:34:56" },
	} {
		cfg := base
		mod(&cfg)
		_, err := buildArgs(cfg, launch{accel: "tcg", dir: "/s", snap: snapLaunch{memFile: "/snap/memory", shared: true}})
		if err == nil || !strings.Contains(err.Error(), "no shares, disks or network") {
			t.Errorf("%s: buildArgs = %v, want a refusal", name, err)
		}
	}
}
