package vm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/digest"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/snapshot"
)

// Warm start: a stage whose VM a snapshot can carry starts from a saved guest instead
// of a cold boot. The snapshot is of a guest booted with BootConfig.Warm to the agent's
// idle point (waiting for the host), keyed by the guest image, memory, vCPUs and VMM
// (package snapshot), built on first use. Every restored VM is re-keyed before
// anything else (proto.Rekey: fresh secret, entropy, clock, and the stage's hostname,
// allow list and debug flag); a stage whose VM needs something at boot that the
// snapshot does not have (a disk, a share, a NIC, forwards, another stage user) is
// cold-booted, and its vm.boot phase says why. A snapshot that fails its checks, or a
// restore or re-key that fails, costs a notice and a cold boot, never the stage.

// digestCacheFile, in the snapshot store's directory, remembers the guest image's
// digests (digest.Cache); the store's listings skip it (it is not a snapshot).
const digestCacheFile = "image-digests.json"

// WarmOptions configure warm start (Options.Warm).
type WarmOptions struct {
	// Store holds the snapshots (~/.voidbox/snapshots for the CLI).
	Store *snapshot.Store
	// Notice receives one line per fallback the user should know of (a corrupt
	// snapshot, a failed build or restore); nil discards them.
	Notice io.Writer
	// NoBuild uses only snapshots that exist (`voidbox snapshot build` makes them);
	// a stage without one cold-boots.
	NoBuild bool

	imageOnce sync.Once
	kernelSum string
	initrdSum string
	imageErr  error

	mu     sync.Mutex
	failed map[string]bool // snapshot ids whose build failed in this process
}

func (w *WarmOptions) notice(format string, args ...any) {
	if w.Notice != nil {
		fmt.Fprintf(w.Notice, "voidbox: "+format+"\n", args...)
	}
}

// imageDigests hashes the guest image once per provider, through a digest cache in the
// store's directory: hashing it costs about 0.1 s under a CPU without SHA
// instructions, on every `voidbox exec` that starts a stage warm.
func (w *WarmOptions) imageDigests(kernel, initramfs string) (string, string, error) {
	w.imageOnce.Do(func() {
		c := digest.NewCache(filepath.Join(w.Store.Dir(), digestCacheFile))
		if w.kernelSum, w.imageErr = c.File(kernel); w.imageErr == nil {
			w.initrdSum, w.imageErr = c.File(initramfs)
		}
	})
	return w.kernelSum, w.initrdSum, w.imageErr
}

// coldReason says why the snapshot cannot carry this stage's VM, "" when it can.
func (p *Provider) coldReason(boot proto.BootConfig, vmcfg runtime.VMConfig) string {
	switch {
	case boot.Root != "" || len(vmcfg.Disks) > 0:
		return "image disks must be attached at boot"
	case len(vmcfg.Shares) > 0 || len(boot.Mounts) > 0:
		return "mounts need devices at boot"
	case vmcfg.NetworkSocket != "" || boot.Net != nil:
		return "network = True needs its NIC at boot"
	case len(boot.Forwards) > 0:
		return "agent stages need their forwards at boot"
	case (boot.UID != 0 && boot.UID != proto.DefaultUID) || (boot.GID != 0 && boot.GID != proto.DefaultGID):
		return fmt.Sprintf("the stage runs as %d:%d, the snapshot's user is %d:%d", boot.UID, boot.GID, proto.DefaultUID, proto.DefaultGID)
	case len(p.opts.KernelArgs) > 0:
		return "extra kernel arguments are set"
	}
	if _, ok := p.opts.VMM.(runtime.Snapshotter); !ok {
		return "the VMM cannot restore snapshots"
	}
	return ""
}

// snapshotKey is the key of the snapshot for a VM of this memory and vCPU count.
func (p *Provider) snapshotKey(ctx context.Context, memoryMB, vcpus int) (snapshot.Key, error) {
	w, sn := p.opts.Warm, p.opts.VMM.(runtime.Snapshotter)
	kernel, initrd, err := w.imageDigests(p.opts.Kernel, p.opts.Initramfs)
	if err != nil {
		return snapshot.Key{}, fmt.Errorf("hash the guest image: %w", err)
	}
	id, err := sn.SnapshotID(ctx, p.opts.Kernel, p.opts.Initramfs)
	if err != nil {
		return snapshot.Key{}, err
	}
	return snapshot.Key{KernelSHA256: kernel, InitramfsSHA256: initrd, MemoryMB: memoryMB, VCPUs: vcpus, VMM: id}, nil
}

// warmStart starts the stage from a snapshot when it can. It returns the sandbox, or
// an error once a restored VM was reached (the stage's own failure), or neither and a
// detail for the cold boot's vm.boot phase ("cold boot: why").
func (p *Provider) warmStart(ctx context.Context, boot proto.BootConfig, vmcfg runtime.VMConfig, newSandbox func(runtime.Machine) *Sandbox) (*Sandbox, string, error) {
	w := p.opts.Warm
	if w == nil {
		return nil, "", nil
	}
	if why := p.coldReason(boot, vmcfg); why != "" {
		return nil, "cold boot: " + why, nil
	}
	key, err := p.snapshotKey(ctx, vmcfg.MemoryMB, vmcfg.VCPUs)
	if err != nil {
		w.notice("warm start of %s: %v; cold boot", vmcfg.Name, err)
		return nil, "cold boot: no snapshot key", nil
	}
	snap, built, why := p.snapshotFor(ctx, key)
	if snap == nil {
		return nil, "cold boot: " + why, nil
	}
	restoring := time.Now()
	m, err := p.opts.VMM.(runtime.Snapshotter).Restore(ctx, vmcfg, snap.Dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", err
		}
		w.notice("restore of snapshot %s failed; cold boot, and the snapshot is removed: %v", snap.Meta.ID, err)
		_ = w.Store.Invalidate(ctx, key)
		return nil, "cold boot: the snapshot did not restore", nil
	}
	detail := "warm start from snapshot " + snap.Meta.ID[:12]
	if built {
		detail += " (built for this stage)"
	}
	sb := newSandbox(m)
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		sb.kill()
		return nil, "", fmt.Errorf("re-key entropy: %w", err)
	}
	rekey := proto.Rekey{Secret: boot.Secret, Entropy: entropy, Hostname: boot.Hostname, Allow: boot.Allow, Debug: boot.Debug}
	client, err := p.connect(ctx, m, func(ctx context.Context, c net.Conn) (*proto.Client, error) {
		rekey.UnixNano = time.Now().UnixNano() // as late as possible: it sets the guest's clock
		return proto.ConnectRekeyed(ctx, c, snap.Meta.Secret, rekey)
	}, restoring, detail)
	if err != nil {
		sb.kill()
		if ctx.Err() != nil {
			return nil, "", sb.explain(err)
		}
		w.notice("the VM restored from snapshot %s did not take its re-key; cold boot, and the snapshot is removed: %v", snap.Meta.ID, err)
		_ = w.Store.Invalidate(ctx, key)
		return nil, "cold boot: the restored VM failed its re-key", nil
	}
	sb.client = client
	sb.agent.serve(client)
	return sb, detail, nil
}

// snapshotFor loads the snapshot for key, building it when there is none (unless
// NoBuild). It returns nil and why when the stage must cold-boot.
func (p *Provider) snapshotFor(ctx context.Context, key snapshot.Key) (snap *snapshot.Snapshot, built bool, why string) {
	w := p.opts.Warm
	snap, err := w.Store.Load(key)
	if err == nil {
		return snap, false, ""
	}
	if errors.Is(err, snapshot.ErrCorrupt) {
		w.notice("%v; cold boot, and the snapshot is removed (the next stage rebuilds it)", err)
		_ = w.Store.Invalidate(ctx, key)
		return nil, false, "the snapshot failed its checks"
	}
	if !errors.Is(err, snapshot.ErrNotFound) {
		w.notice("snapshot %s: %v; cold boot", key.ID(), err)
		return nil, false, "the snapshot is unreadable"
	}
	if w.NoBuild {
		return nil, false, "no snapshot (voidbox snapshot build makes one)"
	}
	w.mu.Lock()
	failed := w.failed[key.ID()]
	w.mu.Unlock()
	if failed {
		return nil, false, "building the snapshot failed"
	}
	snap, err = p.BuildSnapshot(ctx, key)
	if err != nil {
		if ctx.Err() == nil {
			w.notice("%v; cold boot", err)
			w.mu.Lock()
			if w.failed == nil {
				w.failed = map[string]bool{}
			}
			w.failed[key.ID()] = true
			w.mu.Unlock()
		}
		return nil, false, "building the snapshot failed"
	}
	return snap, true, ""
}

// BuildSnapshot makes the snapshot for key (or returns the one another process built
// meanwhile): it boots a warm guest, waits for its agent's idle point, and saves it.
func (p *Provider) BuildSnapshot(ctx context.Context, key snapshot.Key) (*snapshot.Snapshot, error) {
	sn, ok := p.opts.VMM.(runtime.Snapshotter)
	if !ok || p.opts.Warm == nil {
		return nil, fmt.Errorf("build snapshot: the VMM %s cannot save snapshots, or warm start is off", p.opts.VMM.Name())
	}
	return p.opts.Warm.Store.Build(ctx, key, func(ctx context.Context, dir string) (string, error) {
		secret, err := proto.NewSecret()
		if err != nil {
			return "", err
		}
		limits, rlimits := proto.LimitsForBox(key.MemoryMB)
		boot := proto.BootConfig{Secret: secret, Warm: true, Hostname: "voidbox", Limits: limits, Rlimits: rlimits, UnixTime: time.Now().Unix()}
		arg, err := boot.KernelArg()
		if err != nil {
			return "", err
		}
		m, err := sn.SnapshotBoot(ctx, runtime.VMConfig{Name: "snapshot", Kernel: p.opts.Kernel, Initramfs: p.opts.Initramfs, Cmdline: arg,
			MemoryMB: key.MemoryMB, VCPUs: key.VCPUs}, dir)
		if err != nil {
			return "", err
		}
		if err := waitIdle(ctx, m); err != nil {
			_ = m.Kill()
			return "", err
		}
		return secret, sn.SaveSnapshot(ctx, m, dir)
	})
}

// idleSettle is how long after the agent's idle line the snapshot is taken: the agent
// has then gone from logging to waiting on its port for the host.
const idleSettle = 100 * time.Millisecond

// waitIdle waits until the warm agent says it waits for the host's re-key.
func waitIdle(ctx context.Context, m runtime.Machine) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runtime.BootTimeout)
		defer cancel()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(m.ConsoleTail(16<<10), proto.WarmIdleMarker) {
		select {
		case <-m.Done():
			return fmt.Errorf("the snapshot guest stopped before its agent was idle: %v\n%s", m.Err(), m.ConsoleTail(2048))
		case <-ctx.Done():
			return fmt.Errorf("the snapshot guest's agent never became idle: %w\n%s", ctx.Err(), m.ConsoleTail(2048))
		case <-tick.C:
		}
	}
	select {
	case <-time.After(idleSettle):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BuildSnapshotFor builds (or finds) the snapshot for a VM of memoryMB and vcpus with
// this provider's guest image and VMM (`voidbox snapshot build`, benchmarks).
func (p *Provider) BuildSnapshotFor(ctx context.Context, memoryMB, vcpus int) (*snapshot.Snapshot, error) {
	if _, ok := p.opts.VMM.(runtime.Snapshotter); !ok || p.opts.Warm == nil {
		return nil, fmt.Errorf("build snapshot: the VMM %s cannot save snapshots, or warm start is off", p.opts.VMM.Name())
	}
	key, err := p.snapshotKey(ctx, memoryMB, vcpus)
	if err != nil {
		return nil, err
	}
	return p.BuildSnapshot(ctx, key)
}
