package claudecode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/debootstrap"
	"github.com/voidbox/voidbox/oci"
)

// GuestPath is where the root disk holds the claude executable.
const GuestPath = "/usr/local/bin/claude"

// rootPackages are installed beside minbase's bash, coreutils and glibc: the
// agent talks TLS to its provider (through voidbox's proxy or not) and its
// Bash tool's commands fetch over https.
var rootPackages = []string{"ca-certificates"}

// stageUser is the passwd entry of the default stage user, so programs that
// look their user up (getpwuid: node's os.userInfo, whoami, ssh) find one.
const stageUser = "voidbox"

// RootDiskOptions says how RootDisk bootstraps Debian.
type RootDiskOptions struct {
	Suite  string    // debootstrap.DefaultSuite when empty
	Mirror string    // debootstrap.DefaultMirror when empty
	Log    io.Writer // a line per step; nil discards
}

// Disk is a built root disk, as root.json beside it records it.
type Disk struct {
	Path         string    `json:"-"`
	Size         int64     `json:"size"`
	Suite        string    `json:"suite"`
	Mirror       string    `json:"mirror"`
	ClaudeSHA256 string    `json:"claude_sha256"` // the executable it holds
	Built        time.Time `json:"built"`
}

// readRootDisk loads vdir's root.json and checks the disk is there, its size,
// and that it holds the executable whose sha256 is claudeSHA.
func readRootDisk(vdir, claudeSHA string) (*Disk, error) {
	b, err := os.ReadFile(filepath.Join(vdir, rootDiskMeta))
	if err != nil {
		return nil, err
	}
	d := &Disk{}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(vdir, rootDiskMeta), err)
	}
	d.Path = filepath.Join(vdir, rootDiskName)
	fi, err := os.Stat(d.Path)
	if err != nil {
		return nil, err
	}
	if fi.Size() != d.Size || d.ClaudeSHA256 != claudeSHA {
		return nil, fmt.Errorf("%s (%d bytes) does not match %s (%d bytes, claude sha256 %s, want %s)",
			d.Path, fi.Size(), rootDiskMeta, d.Size, d.ClaudeSHA256, claudeSHA)
	}
	return d, nil
}

// RootDisk returns the read-only ext4 root file system of agent boxes that
// have no image=: Debian minbase with ca-certificates, a passwd entry for the
// stage user and in's claude at GuestPath. It is built the first time (about
// a minute: debootstrap downloads some 50 MB, kept in the cache's debs/ for
// the next version) and cached as root.ext4 beside the executable. Building
// needs root and debootstrap; the error says which is missing.
func RootDisk(ctx context.Context, in *Installed, opts RootDiskOptions) (*Disk, error) {
	if opts.Suite == "" {
		opts.Suite = debootstrap.DefaultSuite
	}
	if opts.Mirror == "" {
		opts.Mirror = debootstrap.DefaultMirror
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	vdir := in.Dir()
	usable := func() (*Disk, bool) {
		d, err := readRootDisk(vdir, in.SHA256)
		return d, err == nil && d.Suite == opts.Suite
	}
	if d, ok := usable(); ok {
		return d, nil
	}
	fail := func(err error) error { return fmt.Errorf("claude-code %s root disk: %w", in.Version, err) }
	if err := debootstrap.Check(); err != nil {
		return nil, fail(err)
	}
	cache := filepath.Dir(vdir)
	unlock, err := flock(ctx, filepath.Join(cache, in.Version+".root.lock"), func() {
		fmt.Fprintf(log, "waiting for another voidbox building the claude-code %s root disk\n", in.Version)
	})
	if err != nil {
		return nil, fail(err)
	}
	defer unlock()
	if d, ok := usable(); ok {
		return d, nil
	}
	d, err := buildRootDisk(ctx, in, cache, opts, log)
	if err != nil {
		return nil, fail(err)
	}
	return d, nil
}

func buildRootDisk(ctx context.Context, in *Installed, cache string, opts RootDiskOptions, log io.Writer) (*Disk, error) {
	// The executable is what goes on the disk: check it is the one installed.
	if _, err := readInstalled(in.Dir(), true); err != nil {
		return nil, fmt.Errorf("the installed executable: %w (voidbox agent install reinstalls it)", err)
	}
	tmp := filepath.Join(cache, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(tmp, "rootfs-")
	if err != nil {
		return nil, err
	}
	defer func() {
		// Never remove through a mount debootstrap may have left behind.
		if debootstrap.Unmount(work) == nil {
			os.RemoveAll(work)
		}
	}()
	root := filepath.Join(work, "root")
	fmt.Fprintf(log, "debootstrap %s minbase from %s (about a minute)\n", opts.Suite, opts.Mirror)
	err = debootstrap.Build(ctx, root, debootstrap.Options{Suite: opts.Suite, Mirror: opts.Mirror,
		Include: rootPackages, DebCache: filepath.Join(cache, "debs")})
	if err != nil {
		return nil, err
	}
	if err := addClaude(root, in.Path); err != nil {
		return nil, err
	}
	if err := addStageUser(root); err != nil {
		return nil, err
	}
	fmt.Fprintln(log, "writing the ext4 image")
	raw := filepath.Join(work, rootDiskName)
	if err := oci.BuildExt4(ctx, root, raw, "voidbox claude-code "+in.Version+" "+in.SHA256+" "+opts.Suite); err != nil {
		return nil, err
	}
	if err := os.Chmod(raw, 0o644); err != nil {
		return nil, err
	}
	fi, err := os.Stat(raw)
	if err != nil {
		return nil, err
	}
	d := &Disk{Path: filepath.Join(in.Dir(), rootDiskName), Size: fi.Size(), Suite: opts.Suite, Mirror: opts.Mirror,
		ClaudeSHA256: in.SHA256, Built: time.Now().UTC()}
	// The metadata goes after the disk: a disk without matching metadata is rebuilt.
	if err := os.Remove(filepath.Join(in.Dir(), rootDiskMeta)); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := os.Rename(raw, d.Path); err != nil {
		return nil, err
	}
	meta, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(in.Dir(), rootDiskMeta), append(meta, '\n'), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "root disk %s (%d MiB)\n", d.Path, d.Size>>20)
	return d, nil
}

// addClaude copies the executable to GuestPath in root, owned by root.
func addClaude(root, bin string) error {
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := filepath.Join(root, GuestPath)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, src)
	if err == nil {
		err = f.Chmod(0o755) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy claude into the root: %w", err)
	}
	return nil
}

// addStageUser gives the default stage user a passwd and group entry and a
// home directory it owns.
func addStageUser(root string) error {
	home := "/home/" + stageUser
	add := func(file, line string) error {
		f, err := os.OpenFile(filepath.Join(root, file), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = io.WriteString(f, line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if err := add("etc/passwd", fmt.Sprintf("%s:x:%d:%d:voidbox stage user:%s:/bin/bash\n", stageUser, proto.DefaultUID, proto.DefaultGID, home)); err != nil {
		return fmt.Errorf("stage user: %w", err)
	}
	if err := add("etc/group", fmt.Sprintf("%s:x:%d:\n", stageUser, proto.DefaultGID)); err != nil {
		return fmt.Errorf("stage user: %w", err)
	}
	dir := filepath.Join(root, home)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(dir, proto.DefaultUID, proto.DefaultGID)
}
