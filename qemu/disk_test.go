package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

func TestBuildArgsDisks(t *testing.T) {
	cfg := runtime.VMConfig{Name: "x", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1,
		Disks: []runtime.Disk{{ID: "root", Path: "/c/a,b/root.ext4", ReadOnly: true}, {ID: "data", Path: "/d/data.raw"}}}
	got := argString(t, cfg, launch{accel: "tcg", dir: "/s"})
	root := "-drive file=/c/a,,b/root.ext4,format=raw,if=none,readonly=on,auto-read-only=off,id=root -device virtio-blk-device,drive=root,serial=root"
	data := "-drive file=/d/data.raw,format=raw,if=none,readonly=off,auto-read-only=off,id=data -device virtio-blk-device,drive=data,serial=data"
	i, j := strings.Index(got, root), strings.Index(got, data)
	if i < 0 || j < 0 {
		t.Fatalf("args lack the disks\n%s\n%s\nin:\n%s", root, data, got)
	}
	if i > j {
		t.Errorf("Disks[0] comes after Disks[1] on the command line; the guest would see it as vdb:\n%s", got)
	}
	cfg.Disks = nil
	if got := argString(t, cfg, launch{accel: "tcg", dir: "/s"}); strings.Contains(got, "-drive") || strings.Contains(got, "virtio-blk") {
		t.Errorf("no disks, yet:\n%s", got)
	}
}

func TestBuildArgsRejectsDisks(t *testing.T) {
	base := runtime.VMConfig{Name: "x", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 1}
	many := make([]runtime.Disk, runtime.MaxDisks+1)
	for i := range many {
		many[i] = runtime.Disk{ID: fmt.Sprintf("d%d", i), Path: "/d"}
	}
	for want, disks := range map[string][]runtime.Disk{
		`Disks[0].ID "" must be`:                                  {{Path: "/d"}},
		`Disks[0].ID "0root" must be`:                             {{ID: "0root", Path: "/d"}},
		`Disks[0].ID "a,b" must be`:                               {{ID: "a,b", Path: "/d"}},
		`Disks[1].ID "a" is also Disks[0].ID`:                     {{ID: "a", Path: "/d"}, {ID: "a", Path: "/e"}},
		`Disks[0].Path "rel/d" (disk a) must be an absolute path`: {{ID: "a", Path: "rel/d"}},
		"9 disks; a VM takes at most 8":                           many,
	} {
		c := base
		c.Disks = disks
		_, err := buildArgs(c, launch{accel: "tcg", dir: "/s"})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "vm x") {
			t.Errorf("%v: buildArgs error = %v, want one naming the VM and %q", disks, err, want)
		}
	}
}

// A real boot with a read-only and a writable raw disk in a directory whose
// name has a comma, readable by root alone: when voidbox is root, QEMU drops
// to an unprivileged user in a chroot, so the guest seeing the disks shows
// that QEMU opened them before confining itself.
func TestDisksInGuest(t *testing.T) {
	img := testImage(t)
	dir := filepath.Join(t.TempDir(), "a,b")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ro, rw := filepath.Join(dir, "ro.raw"), filepath.Join(dir, "rw.raw")
	for _, d := range []struct {
		path string
		size int64
	}{{ro, 1 << 20}, {rw, 2 << 20}} {
		f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("voidbox disk " + filepath.Base(d.path)[:2] + " "); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(d.size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	m := bootToPoweroff(t, runtime.VMConfig{
		Name: "disks", Kernel: img.Kernel, Initramfs: img.Initramfs, Cmdline: "voidbox.test=disks",
		MemoryMB: 256, VCPUs: 1,
		Disks: []runtime.Disk{{ID: "ro", Path: ro, ReadOnly: true}, {ID: "rw", Path: rw}},
	})
	console := m.ConsoleTail(1 << 16)
	for _, want := range []string{
		`testinit: disk vda serial=ro size=2048 ro=1 head="voidbox disk ro " write=`,
		`testinit: disk vdb serial=rw size=4096 ro=0 head="voidbox disk rw " write=ok`,
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if strings.Contains(console, "disk vda size=2048 ro=1 head=\"voidbox disk ro \" write=ok") {
		t.Errorf("the guest wrote to the read-only disk:\n%s", console)
	}
	for path, want := range map[string]string{ro: "voidbox disk ro ", rw: "written by guest"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b[:16]); got != want {
			t.Errorf("%s starts with %q on the host after the guest ran, want %q", filepath.Base(path), got, want)
		}
	}
	assertGone(t, m)
}

// bootToPoweroff boots a testinit mode that does its work and powers off, and
// waits for that clean end.
func bootToPoweroff(t *testing.T, cfg runtime.VMConfig) *Machine {
	t.Helper()
	m, err := tcgVMM(t).BootMachine(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Kill() })
	select {
	case <-m.Done():
	case <-time.After(runtime.BootTimeout):
		t.Fatalf("%s guest did not power off; console:\n%s", cfg.Name, m.ConsoleTail(4096))
	}
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
