package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Env is what Setup takes from the agent.
type Env struct {
	// Ensure loads kernel modules (with their dependencies) that the image ships;
	// nil when its kernel has everything built in.
	Ensure func(modules ...string) error
	// Wait bounds the wait for each disk to appear, polling every Interval.
	Wait, Interval time.Duration
	// SysBlock and DevDir are where disks are found (default SysBlock and /dev).
	SysBlock, DevDir string
}

// Mounted is what Setup mounted.
type Mounted struct {
	// Root is StageRoot when the stages have their own root, "" when they keep the
	// initramfs.
	Root  string
	steps []Step // as carried out: disks' Source is their /dev node
}

// Setup carries out Plan(c): it loads the modules the mounts need, waits for each disk
// by its serial, creates mount points and mounts. The first failure ends it with an
// error naming the mount (tag or serial, and path); what was mounted before stays.
func Setup(c Config, env Env) (*Mounted, error) {
	if env.SysBlock == "" {
		env.SysBlock = SysBlock
	}
	if env.DevDir == "" {
		env.DevDir = "/dev"
	}
	if mods := Modules(c); env.Ensure != nil && len(mods) > 0 {
		if err := env.Ensure(mods...); err != nil {
			return nil, fmt.Errorf("file systems: %w", err)
		}
	}
	m := &Mounted{}
	if c.Root != "" {
		m.Root = StageRoot
	}
	for _, s := range Plan(c) {
		if s.Disk != "" {
			dev, err := WaitDisk(env.SysBlock, env.DevDir, s.Disk, env.Wait, env.Interval)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w", s.What, err)
			}
			s.Source = dev
		}
		if err := doStep(s); err != nil {
			return nil, err
		}
		m.steps = append(m.steps, s)
	}
	return m, nil
}

// doStep creates s's directories and mount point, and mounts.
func doStep(s Step) error {
	for _, d := range s.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", s.What, err)
		}
	}
	target, err := OpenIn(s.In, s.Target)
	if err != nil {
		return fmt.Errorf("mount %s: mount point: %w", s.What, err)
	}
	defer target.Close()
	if err := unix.Mount(s.Source, fdPath(target), s.FSType, s.Flags, s.Data); err != nil {
		return fmt.Errorf("mount %s: %s %s on %s (%s): %w%s", s.What, s.FSType, s.Source, s.Path(), s.Data, err, hint(s, err))
	}
	return nil
}

// hint says what usually causes err for s.
func hint(s Step, err error) string {
	switch {
	case s.FSType == "virtiofs" && errors.Is(err, unix.EINVAL):
		// What virtio-fs answers for a tag no device has.
		return ": the VMM has no virtio-fs share with this tag"
	case s.FSType == "ext4" && errors.Is(err, unix.EINVAL):
		return ": the disk does not hold an ext4 file system"
	case errors.Is(err, unix.ENODEV):
		return ": the guest kernel lacks this file system"
	}
	return ""
}

// String is the console's one line on what was mounted.
func (m *Mounted) String() string {
	var parts []string
	var image, upper string
	for _, s := range m.steps {
		switch {
		case s.In == AgentTree && s.Target == ImageDir:
			image = fmt.Sprintf("%s (%s, ext4, read-only)", s.What, s.Source)
		case s.In == AgentTree && s.Target == UpperDir:
			upper = s.Data
		case s.In == AgentTree && s.Target == StageRoot:
			parts = append(parts, fmt.Sprintf("stage root %s is %s under an overlay (tmpfs %s)", StageRoot, image, upper))
		case s.FSType == "virtiofs" || s.FSType == "ext4":
			what := s.What
			if s.Disk != "" {
				what += " from " + s.Source
			}
			parts = append(parts, what)
		}
	}
	if m.Root == "" {
		if len(parts) == 0 {
			return "file systems: stages run in the initramfs; no mounts"
		}
		parts = append([]string{"stages run in the initramfs"}, parts...)
	}
	return "file systems: " + strings.Join(parts, "; ")
}

// OpenIn opens p (absolute and clean) in the tree rooted at dir as an O_PATH
// directory, creating missing directories (0755, owned by the caller: root in the
// guest). Symlinks resolve inside dir, as they would for a process whose root dir is,
// so an image's "/etc -> /" or "/opt -> ../../.." stays inside the image.
func OpenIn(dir, p string) (*os.File, error) {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return nil, fmt.Errorf("%q is not an absolute clean path", p)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(root)
	fd, err := openCreate(root, strings.TrimPrefix(p, "/"))
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", p, dir, err)
	}
	return os.NewFile(uintptr(fd), path.Join(dir, p)), nil
}

// inRoot resolves every lookup as if root were "/": absolute symlinks and ".." stop
// at it. Magic links (/proc/self/...) cannot lead out either.
var inRoot = unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}

// openCreate opens rel (relative, clean; "" is root itself) under root, creating what
// is missing from its last existing ancestor down.
func openCreate(root int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(root, rel, &inRoot)
	if !errors.Is(err, unix.ENOENT) || rel == "." {
		return fd, err
	}
	parent, err := openCreate(root, path.Dir(rel))
	if err != nil {
		return -1, err
	}
	name := path.Base(rel)
	err = unix.Mkdirat(parent, name, 0o755)
	if err == nil {
		// Whatever the umask, a mount point is rwxr-xr-x.
		err = unix.Fchmodat(parent, name, 0o755, 0)
	} else if errors.Is(err, unix.EEXIST) {
		err = nil // a dangling symlink: the open below says so
	}
	unix.Close(parent)
	if err != nil {
		return -1, fmt.Errorf("mkdir %s: %w", rel, err)
	}
	return unix.Openat2(root, rel, &inRoot)
}

// fdPath names f's file through procfs: a mount on it lands on exactly the directory
// OpenIn resolved, not on whatever a path would resolve to by then.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// Dir opens p inside the stage root (creating it) and returns a path that reaches it
// from the agent's tree without following anything the image holds, for writing files
// there (/etc/resolv.conf), and the open directory to close when done. It needs a stage root.
func (m *Mounted) Dir(p string) (string, *os.File, error) {
	if m.Root == "" {
		return "", nil, errors.New("no stage root: the stages run in the initramfs")
	}
	f, err := OpenIn(m.Root, p)
	if err != nil {
		return "", nil, fmt.Errorf("stage root: %w", err)
	}
	return fdPath(f), f, nil
}
