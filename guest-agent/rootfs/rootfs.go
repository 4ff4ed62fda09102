// Package rootfs mounts, at boot and before the agent serves, the file systems a box's
// stages see: its image as their root (a read-only ext4 disk under a tmpfs overlay, with
// the agent's /workspace and /tmp, /dev, a fresh /proc and a read-only /sys inside), and
// its mounts (virtio-fs shares and read-only disks) where the boot config puts them:
// inside that root when there is one, else in the initramfs. The agent itself stays in
// the initramfs; its confinement shim (package agent) makes StageRoot the "/" of each
// stage process.
//
// The mounts are planned (Plan, pure, unit-tested) and then carried out (Setup). Every
// mount point inside an image is resolved inside the image (openat2 RESOLVE_IN_ROOT), so
// an image's symlinks ("/etc -> /") cannot point a mount or a write at the agent's own
// tree. Any failure fails the boot, naming the mount: a stage never runs without a file
// system it asked for.
package rootfs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// Where the agent keeps a box's image and its stages' root, all under /run (a tmpfs
// proto.CheckMountPath keeps every mount out of).
const (
	// ImageDir is the root disk, mounted read-only: the overlay's lower layer.
	ImageDir = "/run/voidbox/image"
	// UpperDir is a sized tmpfs holding the overlay's upper and work directories:
	// what stages write outside /workspace and /tmp goes there, never to the disk.
	UpperDir = "/run/voidbox/rw"
	// StageRoot is the overlay: the "/" of every stage process.
	StageRoot = "/run/voidbox/root"
)

// AgentTree is the tree mount targets are in when they are the agent's own (the
// initramfs, and /workspace and /tmp which the stage root shares).
const AgentTree = "/"

// Kernel modules the plan may need; an image whose kernel has them built in does not
// ship them, and the agent's loader takes only those it ships.
const (
	ModVirtioBlk = "virtio_blk"
	ModVirtiofs  = "virtiofs"
	ModOverlay   = "overlay"
)

// Config is what the boot config asks for.
type Config struct {
	// Root is the serial of the disk whose ext4 file system the stages see as "/";
	// "" keeps the initramfs as their root.
	Root string
	// Mounts are mounted in order, inside the stage root when Root is set.
	Mounts []proto.Mount
	// UpperMB sizes the overlay's tmpfs (the boot config's Limits.TmpMB); 0 means a
	// quarter of the guest's RAM (tmpfs's own "size=25%").
	UpperMB int
}

// FromBoot is the Config of a validated boot config.
func FromBoot(b proto.BootConfig) Config {
	return Config{Root: b.Root, Mounts: b.Mounts, UpperMB: b.Limits.TmpMB}
}

// Step is one mount of a plan.
type Step struct {
	What string // for messages: `virtiofs share "data" at /data (read-only)`
	// Source is what is mounted: a file system name, a virtio-fs tag, or an agent
	// directory (a bind). When Disk is set it is filled in at run time with the /dev
	// node of the disk whose virtio-blk serial is Disk.
	Source string
	Disk   string
	// In is the tree Target is a path of: AgentTree or StageRoot. Target and its
	// missing parents are created (0755, owned by root), resolving symlinks inside In.
	In     string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	// Dirs are agent directories created (0755) just before the mount: the overlay's
	// upper and work directories in the tmpfs an earlier step mounted.
	Dirs []string
}

// Path is where the step mounts, as the agent sees it.
func (s Step) Path() string {
	if s.In == AgentTree {
		return s.Target
	}
	return s.In + s.Target
}

// Flags every mount gets: no device nodes and no set-user-ID programs (stages run
// with no_new_privs anyway; these hold whatever a later exec does).
const (
	baseFlags = unix.MS_NODEV | unix.MS_NOSUID
	diskFlags = unix.MS_RDONLY | baseFlags
)

// Plan lists the mounts c asks for, in the order they must happen.
//
// With a root disk: the disk read-only at ImageDir; a tmpfs at UpperDir; the overlay
// at StageRoot; the mounts under /workspace or /tmp in the agent's tree (so the agent's
// file operations and the stages see the same files); /workspace and /tmp, /dev (the
// agent's devtmpfs with /dev/pts: no device more reachable than in the initramfs), a
// fresh /proc and /sys (read-only) into the stage root; then the other mounts, in
// order, inside it. Without one: every mount in the agent's tree, in order.
func Plan(c Config) []Step {
	if c.Root == "" {
		steps := make([]Step, 0, len(c.Mounts))
		for _, m := range c.Mounts {
			steps = append(steps, mountStep(m, AgentTree))
		}
		return steps
	}
	upperSize := "25%"
	if c.UpperMB > 0 {
		upperSize = strconv.Itoa(c.UpperMB) + "m"
	}
	steps := []Step{
		{What: fmt.Sprintf("root disk %q", c.Root), Disk: c.Root, In: AgentTree, Target: ImageDir,
			FSType: "ext4", Flags: diskFlags},
		{What: "the stage root's tmpfs", Source: "tmpfs", In: AgentTree, Target: UpperDir,
			FSType: "tmpfs", Flags: baseFlags, Data: "mode=0755,size=" + upperSize},
		{What: "the stage root's overlay", Source: "overlay", In: AgentTree, Target: StageRoot,
			FSType: "overlay", Flags: baseFlags, Data: OverlayData(ImageDir, UpperDir+"/upper", UpperDir+"/work"),
			Dirs: []string{UpperDir + "/upper", UpperDir + "/work"}},
	}
	var inside []Step
	for _, m := range c.Mounts {
		if underShared(m.Path) {
			steps = append(steps, mountStep(m, AgentTree))
		} else {
			inside = append(inside, mountStep(m, StageRoot))
		}
	}
	for _, d := range []string{"/workspace", "/tmp", "/dev"} {
		steps = append(steps, Step{What: "the agent's " + d, Source: d, In: StageRoot, Target: d,
			Flags: unix.MS_BIND | unix.MS_REC})
	}
	steps = append(steps,
		Step{What: "/proc", Source: "proc", In: StageRoot, Target: "/proc", FSType: "proc",
			Flags: baseFlags | unix.MS_NOEXEC},
		Step{What: "/sys", Source: "/sys", In: StageRoot, Target: "/sys", Flags: unix.MS_BIND | unix.MS_REC},
		// A bind takes the flags of what it binds: read-only takes a remount.
		Step{What: "/sys read-only", In: StageRoot, Target: "/sys",
			Flags: unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | baseFlags | unix.MS_NOEXEC},
	)
	return append(steps, inside...)
}

// underShared reports whether p is under the agent's /workspace or /tmp, which the
// stage root shares with the agent.
func underShared(p string) bool {
	return strings.HasPrefix(p, "/workspace/") || strings.HasPrefix(p, "/tmp/")
}

func mountStep(m proto.Mount, in string) Step {
	flags := uintptr(baseFlags)
	mode := "read-write"
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
		mode = "read-only"
	}
	if m.Kind == proto.MountDisk {
		return Step{What: fmt.Sprintf("disk %q at %s (%s)", m.Source, m.Path, mode), Disk: m.Source,
			In: in, Target: m.Path, FSType: "ext4", Flags: flags}
	}
	return Step{What: fmt.Sprintf("virtiofs share %q at %s (%s)", m.Source, m.Path, mode), Source: m.Source,
		In: in, Target: m.Path, FSType: "virtiofs", Flags: flags}
}

// OverlayData is the overlay mount's option string. Paths with ',' or ':' would need
// escaping; the agent's own never have them.
func OverlayData(lower, upper, work string) string {
	return "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
}

// Modules are the kernel modules c's mounts need (those an image ships are loaded,
// the others are built into its kernel).
func Modules(c Config) []string {
	var mods []string
	disk, fs := c.Root != "", false
	for _, m := range c.Mounts {
		disk = disk || m.Kind == proto.MountDisk
		fs = fs || m.Kind == proto.MountVirtiofs
	}
	if disk {
		mods = append(mods, ModVirtioBlk)
	}
	if fs {
		mods = append(mods, ModVirtiofs)
	}
	if c.Root != "" {
		mods = append(mods, ModOverlay)
	}
	return mods
}
