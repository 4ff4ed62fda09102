package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/runtime"
)

// rootDiskID is the serial of the disk holding a box's image (its stages' "/").
const rootDiskID = "root"

// boxFS is what a box's file systems add to its VM: disks (its image, its skill
// images), virtio-fs shares (its mounts), what the guest mounts where, and the image's
// settings for each exec.
type boxFS struct {
	disks  []runtime.Disk
	shares []runtime.Share
	root   string // proto.BootConfig.Root
	mounts []proto.Mount
	image  *oci.Image // nil without image=
	uid    int        // the image's user, 0 for the default stage user
	gid    int
}

// images resolves each image reference once per provider: a run's stages share the
// digest their first pull resolved, and later attempts need no registry.
type images struct {
	store  *oci.Store
	policy oci.PullPolicy
	mu     sync.Mutex
	pulled map[string]*pulled
}

type pulled struct {
	once sync.Once
	img  *oci.Image
	disk *oci.Disk
	err  error
}

func (im *images) get(ctx context.Context, ref string) (*oci.Image, *oci.Disk, error) {
	if im == nil || im.store == nil {
		return nil, nil, fmt.Errorf("image %q: %w (no image store configured)", ref, runtime.ErrUnsupported)
	}
	im.mu.Lock()
	p, ok := im.pulled[ref]
	if !ok {
		p = &pulled{}
		im.pulled[ref] = p
	}
	im.mu.Unlock()
	p.once.Do(func() {
		p.img, p.err = im.store.Pull(ctx, ref, oci.PullOptions{Policy: im.policy})
		if p.err == nil {
			p.disk, p.err = im.store.Disk(ctx, p.img)
		}
	})
	if p.err != nil && ctx.Err() == nil && errors.Is(p.err, context.Canceled) {
		// Only the cancelled caller's pull failed; let the next one try again.
		im.mu.Lock()
		delete(im.pulled, ref)
		im.mu.Unlock()
	}
	return p.img, p.disk, p.err
}

// openFS pulls spec's image and skill images (building their disks) and checks its
// mounts, before anything boots: a bad reference or host path fails the stage here.
func (p *Provider) openFS(ctx context.Context, spec runtime.SandboxSpec) (*boxFS, error) {
	fs := &boxFS{}
	if spec.Image != "" {
		img, disk, err := p.images.get(ctx, spec.Image)
		if err != nil {
			return nil, fmt.Errorf("image = %q: %w", spec.Image, err)
		}
		uid, gid, err := disk.Owner()
		if err != nil {
			return nil, fmt.Errorf("image = %q: its user %q: %w", spec.Image, img.Config.User, err)
		}
		// Stages never run as root: an image whose user is root (or unset) runs its
		// stage as the default stage user.
		if uid != 0 {
			fs.uid, fs.gid = uid, gid
		}
		fs.image = img
		fs.root = rootDiskID
		fs.disks = append(fs.disks, runtime.Disk{ID: rootDiskID, Path: disk.Path, ReadOnly: true})
	}
	var unbound []string
	for _, sk := range spec.Skills {
		if spec.Agent && sk.Kind != runtime.SkillImage {
			continue // the agent, its files, MCP servers and tools: RunAgent binds them
		}
		if sk.Kind != runtime.SkillImage {
			unbound = append(unbound, fmt.Sprintf("%s %q", sk.Kind, sk.Name))
			continue
		}
		_, disk, err := p.images.get(ctx, sk.Image)
		if err != nil {
			return nil, fmt.Errorf("skill(image = %q): %w", sk.Image, err)
		}
		id := "skill" + strconv.Itoa(len(fs.disks))
		fs.disks = append(fs.disks, runtime.Disk{ID: id, Path: disk.Path, ReadOnly: true})
		fs.mounts = append(fs.mounts, proto.Mount{Kind: proto.MountDisk, Source: id, Path: sk.MountPath, ReadOnly: true})
	}
	if len(unbound) > 0 {
		return nil, fmt.Errorf("skills %s are %w yet (a command box binds image skills only; the others are an agent box's); remove them from skills=", strings.Join(unbound, ", "), runtime.ErrUnsupported)
	}
	for i, m := range spec.Mounts {
		host, err := p.checkHostPath(m.Host, m.Mode == runtime.MountRW)
		if err != nil {
			return nil, fmt.Errorf("mount %s -> %s: %w", m.Host, m.Guest, err)
		}
		tag := "fs" + strconv.Itoa(i)
		ro := m.Mode != runtime.MountRW
		fs.shares = append(fs.shares, runtime.Share{Tag: tag, HostPath: host, ReadOnly: ro})
		fs.mounts = append(fs.mounts, proto.Mount{Kind: proto.MountVirtiofs, Source: tag, Path: m.Guest, ReadOnly: ro})
	}
	if fs.uid == 0 && slices.ContainsFunc(spec.Mounts, func(m runtime.Mount) bool { return m.Mode == runtime.MountRW }) {
		// virtiofsd creates files with the guest's ids: a stage that runs as the
		// user who invoked voidbox leaves files that user owns on the host.
		fs.uid, fs.gid = invokingUser()
	}
	for _, m := range fs.mounts {
		if err := proto.CheckMountPath(m.Path); err != nil {
			return nil, fmt.Errorf("mount at %s: %w", m.Path, err)
		}
	}
	return fs, nil
}

// invokingUser is the user who ran voidbox, seen through sudo (SUDO_UID, SUDO_GID),
// or 0, 0 (the default stage user) when that is root: stages never run as root.
func invokingUser() (uid, gid int) {
	uid, gid = os.Getuid(), os.Getgid()
	if su, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil && uid == 0 {
		sg, _ := strconv.Atoi(os.Getenv("SUDO_GID"))
		uid, gid = su, sg
	}
	if uid <= 0 || gid <= 0 {
		return 0, 0
	}
	return uid, gid
}

// checkHostPath resolves a mount's host directory (symlinks included) and refuses
// what no box may share: the host's root, voidbox's own state and caches or a
// directory inside them, and, writable, a directory that holds them (their images
// and kernels are what other boxes trust).
func (p *Provider) checkHostPath(host string, writable bool) (string, error) {
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("host directory %s does not exist", host)
		}
		return "", fmt.Errorf("host directory: %w", err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("host directory: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("host path %s is not a directory", real)
	}
	if real == "/" {
		return "", errors.New("the host's root directory cannot be shared with a box")
	}
	for _, private := range p.privateDirs() {
		if private == "" {
			continue
		}
		if real == private || strings.HasPrefix(real, private+"/") {
			return "", fmt.Errorf("host directory %s is voidbox's own state (%s), which a box may not share", real, private)
		}
		if writable && strings.HasPrefix(private, real+"/") {
			return "", fmt.Errorf("host directory %s holds voidbox's own state (%s), which a box may not write: mount it \"ro\", or a directory beside the state", real, private)
		}
	}
	return real, nil
}

// privateDirs are voidbox's state and caches: the guest image, kernels, images.
func (p *Provider) privateDirs() []string {
	dirs := []string{}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".voidbox"))
	}
	if p.images != nil && p.images.store != nil {
		dirs = append(dirs, p.images.store.Dir())
	}
	for _, f := range []string{p.opts.Kernel, p.opts.Initramfs} {
		dirs = append(dirs, filepath.Dir(f))
	}
	for i, d := range dirs {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			dirs[i] = real
		}
	}
	return dirs
}

// execRequest applies the image's settings to an exec: its Env under the box's own
// variables (which win), and its WorkingDir where the stage did not choose one.
func (fs *boxFS) execRequest(req proto.ExecRequest, workingDir bool) proto.ExecRequest {
	if fs == nil || fs.image == nil {
		return req
	}
	env := map[string]string{}
	for _, kv := range fs.image.Config.Environ(req.Env) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	req.Env = env
	if wd := fs.image.Config.WorkingDir; workingDir && wd != "" && (req.Dir == "" || req.Dir == runtime.WorkDir) {
		req.Dir = wd
	}
	return req
}

// imagePath is the PATH the box's image sets (oci.DefaultPath when it sets none).
func (fs *boxFS) imagePath() string {
	if fs != nil && fs.image != nil {
		for _, kv := range fs.image.Config.Environ(nil) {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				return v
			}
		}
	}
	return oci.DefaultPath
}
