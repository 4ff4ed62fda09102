package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// describe renders a plan one step a line, flags by name, for comparison.
func describe(steps []Step) string {
	names := []struct {
		f    uintptr
		name string
	}{{unix.MS_RDONLY, "ro"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"},
		{unix.MS_REMOUNT, "remount"}, {unix.MS_BIND, "bind"}, {unix.MS_REC, "rec"}}
	var b strings.Builder
	for _, s := range steps {
		var fl []string
		for _, n := range names {
			if s.Flags&n.f != 0 {
				fl = append(fl, n.name)
			}
		}
		src := s.Source
		if s.Disk != "" {
			src = "disk:" + s.Disk
		}
		fmt.Fprintf(&b, "%s %s -> %s [%s] %q", s.FSType, src, s.Path(), strings.Join(fl, ","), s.Data)
		if len(s.Dirs) > 0 {
			fmt.Fprintf(&b, " dirs %v", s.Dirs)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestPlanWithoutRoot(t *testing.T) {
	c := Config{Mounts: []proto.Mount{
		{Kind: proto.MountVirtiofs, Source: "fs0", Path: "/data", ReadOnly: true},
		{Kind: proto.MountVirtiofs, Source: "fs1", Path: "/workspace/out"},
		{Kind: proto.MountDisk, Source: "skill1", Path: "/opt/skill", ReadOnly: true},
	}}
	want := `virtiofs fs0 -> /data [ro,nosuid,nodev] ""
virtiofs fs1 -> /workspace/out [nosuid,nodev] ""
ext4 disk:skill1 -> /opt/skill [ro,nosuid,nodev] ""
`
	if got := describe(Plan(c)); got != want {
		t.Errorf("plan without a root disk:\n%s\nwant (every mount in the initramfs, in order):\n%s", got, want)
	}
	if got, want := Modules(c), []string{ModVirtioBlk, ModVirtiofs}; !slices.Equal(got, want) {
		t.Errorf("Modules = %v, want %v", got, want)
	}
	if got := Plan(Config{}); len(got) != 0 {
		t.Errorf("a boot config with no root and no mounts plans %d mounts, want none:\n%s", len(got), describe(got))
	}
	if got := Modules(Config{}); len(got) != 0 {
		t.Errorf("a boot config with no root and no mounts needs modules %v, want none", got)
	}
}

func TestPlanWithRoot(t *testing.T) {
	c := Config{Root: "root", UpperMB: 96, Mounts: []proto.Mount{
		{Kind: proto.MountVirtiofs, Source: "fs0", Path: "/data", ReadOnly: true},
		{Kind: proto.MountVirtiofs, Source: "fs1", Path: "/workspace/out"},
		{Kind: proto.MountDisk, Source: "skill1", Path: "/opt/skill", ReadOnly: true},
		{Kind: proto.MountVirtiofs, Source: "fs2", Path: "/tmp/cache", ReadOnly: true},
	}}
	// The image read-only, its overlay on a sized tmpfs; mounts under /workspace and
	// /tmp in the agent's tree before those are bound into the root (so the agent's
	// file operations see them too); the others inside the root, in order.
	want := `ext4 disk:root -> /run/voidbox/image [ro,nosuid,nodev] ""
tmpfs tmpfs -> /run/voidbox/rw [nosuid,nodev] "mode=0755,size=96m"
overlay overlay -> /run/voidbox/root [nosuid,nodev] "lowerdir=/run/voidbox/image,upperdir=/run/voidbox/rw/upper,workdir=/run/voidbox/rw/work" dirs [/run/voidbox/rw/upper /run/voidbox/rw/work]
virtiofs fs1 -> /workspace/out [nosuid,nodev] ""
virtiofs fs2 -> /tmp/cache [ro,nosuid,nodev] ""
 /workspace -> /run/voidbox/root/workspace [bind,rec] ""
 /tmp -> /run/voidbox/root/tmp [bind,rec] ""
 /dev -> /run/voidbox/root/dev [bind,rec] ""
proc proc -> /run/voidbox/root/proc [nosuid,nodev,noexec] ""
 /sys -> /run/voidbox/root/sys [bind,rec] ""
  -> /run/voidbox/root/sys [ro,nosuid,nodev,noexec,remount,bind] ""
virtiofs fs0 -> /run/voidbox/root/data [ro,nosuid,nodev] ""
ext4 disk:skill1 -> /run/voidbox/root/opt/skill [ro,nosuid,nodev] ""
`
	if got := describe(Plan(c)); got != want {
		t.Errorf("plan with a root disk:\n%s\nwant:\n%s", got, want)
	}
	if got, want := Modules(c), []string{ModVirtioBlk, ModVirtiofs, ModOverlay}; !slices.Equal(got, want) {
		t.Errorf("Modules = %v, want %v", got, want)
	}
	// No tmpfs limit in the boot config: a quarter of the guest's RAM.
	c.UpperMB = 0
	if got := Plan(c)[1].Data; got != "mode=0755,size=25%" {
		t.Errorf("overlay tmpfs without a size limit: data %q, want mode=0755,size=25%%", got)
	}
	if got, want := Modules(Config{Root: "root"}), []string{ModVirtioBlk, ModOverlay}; !slices.Equal(got, want) {
		t.Errorf("Modules of a root disk alone = %v, want %v", got, want)
	}
}

func TestFromBoot(t *testing.T) {
	b := proto.BootConfig{Root: "root", Limits: proto.Limits{TmpMB: 7, WorkspaceMB: 9},
		Mounts: []proto.Mount{{Kind: proto.MountDisk, Source: "s", Path: "/s", ReadOnly: true}}}
	c := FromBoot(b)
	if c.Root != "root" || c.UpperMB != 7 || len(c.Mounts) != 1 || c.Mounts[0].Path != "/s" {
		t.Errorf("FromBoot(%+v) = %+v; want Root, Mounts and UpperMB from Limits.TmpMB", b, c)
	}
}

// fakeBlock builds a sysfs /sys/block with the given device -> serial ("" for a device
// without a serial file), and a /dev holding nodes for devs.
func fakeBlock(t *testing.T, serials map[string]string, devs ...string) (sys, dev string) {
	t.Helper()
	sys, dev = filepath.Join(t.TempDir(), "block"), t.TempDir()
	for name, serial := range serials {
		if err := os.MkdirAll(filepath.Join(sys, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if serial != "" {
			if err := os.WriteFile(filepath.Join(sys, name, "serial"), []byte(serial), 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range devs {
		if err := os.WriteFile(filepath.Join(dev, d), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return sys, dev
}

func TestFindDisk(t *testing.T) {
	// The kernel hands virtio-blk's serial over as is (NUL padding included for a
	// 20-byte serial); a loop device has no serial.
	sys, _ := fakeBlock(t, map[string]string{"vda": "root", "vdb": "skill1\x00\x00", "vdc": "skill10\n", "loop0": ""})
	for serial, want := range map[string]string{"root": "vda", "skill1": "vdb", "skill10": "vdc", "skill": "", "roo": ""} {
		name, seen, err := FindDisk(sys, serial)
		if err != nil || name != want {
			t.Errorf("FindDisk(%q) = %q, %v; want %q", serial, name, err, want)
		}
		if !slices.Equal(seen, []string{"loop0", "vda", "vdb", "vdc"}) {
			t.Errorf("FindDisk(%q) saw %v, want every block device, sorted", serial, seen)
		}
	}
	sys, _ = fakeBlock(t, map[string]string{"vda": "root", "vdb": "root"})
	if _, _, err := FindDisk(sys, "root"); err == nil || !strings.Contains(err.Error(), "vda and vdb both have serial \"root\"") {
		t.Errorf("two disks with one serial: %v, want an error naming both", err)
	}
	if _, _, err := FindDisk(filepath.Join(t.TempDir(), "none"), "root"); err == nil {
		t.Error("FindDisk in a missing directory succeeded")
	}
}

func TestWaitDisk(t *testing.T) {
	sys, dev := fakeBlock(t, map[string]string{"vda": "root", "vdb": "skill1"}, "vda")
	got, err := WaitDisk(sys, dev, "root", time.Second, time.Millisecond)
	if err != nil || got != filepath.Join(dev, "vda") {
		t.Errorf("WaitDisk(root) = %q, %v; want %s", got, err, filepath.Join(dev, "vda"))
	}
	// Listed but its node not (yet) created.
	_, err = WaitDisk(sys, dev, "skill1", 20*time.Millisecond, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `disk "skill1" is vdb, but `+filepath.Join(dev, "vdb")+" did not appear") {
		t.Errorf("WaitDisk without the /dev node: %v, want an error naming the node", err)
	}
	_, err = WaitDisk(sys, dev, "nope", 20*time.Millisecond, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `no block device with serial "nope"`) || !strings.Contains(err.Error(), "vda, vdb") {
		t.Errorf("WaitDisk of a missing serial: %v, want an error naming the serial and the devices seen", err)
	}
	// A disk that shows up while waiting (virtio-blk probes asynchronously).
	go func() {
		time.Sleep(30 * time.Millisecond)
		_ = os.MkdirAll(filepath.Join(sys, "vdc"), 0o755)
		_ = os.WriteFile(filepath.Join(sys, "vdc", "serial"), []byte("late"), 0o444)
		_ = os.WriteFile(filepath.Join(dev, "vdc"), nil, 0o600)
	}()
	if got, err := WaitDisk(sys, dev, "late", 10*time.Second, time.Millisecond); err != nil || got != filepath.Join(dev, "vdc") {
		t.Errorf("WaitDisk of a disk that appears later = %q, %v", got, err)
	}
}

func TestOpenInStaysInside(t *testing.T) {
	outside := t.TempDir()
	root := t.TempDir()
	// An image may hold any symlinks: none may lead a mount point out of it.
	// Names outside the image are resolved inside it: "out" dangles there.
	for link, target := range map[string]string{"etc": "/", "opt": "/real", "out": outside, "up": "../../../..", "dangling": "/nowhere/x"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/workspace":     "workspace",
		"/a/b/c":         "a/b/c",
		"/etc/resolvdir": "resolvdir", // /etc -> / is the root itself
		"/opt/skill":     "real/skill",
		"/up/x":          "x",
		"/":              ".",
	} {
		f, err := OpenIn(root, p)
		if err != nil {
			t.Errorf("OpenIn(%s): %v", p, err)
			continue
		}
		var a, b unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &a); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := unix.Stat(filepath.Join(root, want), &b); err != nil {
			t.Errorf("OpenIn(%s) made no %s inside the root: %v", p, want, err)
			continue
		}
		if a.Ino != b.Ino || a.Dev != b.Dev {
			t.Errorf("OpenIn(%s) opened something other than <root>/%s", p, want)
		}
		if p != "/" && b.Mode&0o7777 != 0o755 {
			t.Errorf("OpenIn(%s) made %s mode %o, want 0755", p, want, b.Mode&0o7777)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("OpenIn wrote outside the root through a symlink: %v", entries)
	}
	for _, p := range []string{"/file/x", "/dangling/y", "/out/x", "rel", "/a/../b"} {
		if f, err := OpenIn(root, p); err == nil {
			f.Close()
			t.Errorf("OpenIn(%s) succeeded, want an error", p)
		}
	}
}

func TestMountedString(t *testing.T) {
	steps := Plan(Config{Root: "root", UpperMB: 96, Mounts: []proto.Mount{
		{Kind: proto.MountVirtiofs, Source: "fs0", Path: "/data", ReadOnly: true},
		{Kind: proto.MountDisk, Source: "skill1", Path: "/opt/skill", ReadOnly: true},
	}})
	steps[0].Source, steps[len(steps)-1].Source = "/dev/vda", "/dev/vdb"
	m := &Mounted{Root: StageRoot, steps: steps}
	want := `file systems: stage root /run/voidbox/root is root disk "root" (/dev/vda, ext4, read-only) under an overlay (tmpfs mode=0755,size=96m); ` +
		`virtiofs share "fs0" at /data (read-only); disk "skill1" at /opt/skill (read-only) from /dev/vdb`
	if got := m.String(); got != want {
		t.Errorf("console line:\n%s\nwant\n%s", got, want)
	}
	if got, want := (&Mounted{}).String(), "file systems: stages run in the initramfs; no mounts"; got != want {
		t.Errorf("console line without mounts: %q, want %q", got, want)
	}
	m = &Mounted{steps: Plan(Config{Mounts: []proto.Mount{{Kind: proto.MountVirtiofs, Source: "fs0", Path: "/out"}}})}
	if got, want := m.String(), `file systems: stages run in the initramfs; virtiofs share "fs0" at /out (read-write)`; got != want {
		t.Errorf("console line: %q, want %q", got, want)
	}
	if _, _, err := m.Dir("/etc"); err == nil {
		t.Error("Dir without a stage root succeeded")
	}
}
