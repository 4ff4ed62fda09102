package chv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// Warm start under Cloud Hypervisor (runtime.Snapshotter), through its REST API.
//
// A snapshot directory holds what vm.snapshot writes there (Cloud Hypervisor v53,
// vmm/src/vm.rs and memory_manager.rs):
//
//   - config.json: the VM's whole VmConfig, host paths included: the serial file
//     and the hybrid-vsock socket of the VM that was saved;
//   - state.json: the device, vCPU and memory-manager state;
//   - memory-ranges: guest RAM, written sparse;
//
// and voidbox-chv.json, which SnapshotBoot writes: the saved VM's state directory,
// whose paths config.json names.
//
// vm.restore reads config.json, then state.json, then memory-ranges (opened
// read-only), all from source_url, a file:// directory. Restore never hands it the
// snapshot's directory: two VMs restored at once would bind the same vsock socket
// and write the same console file. Each restored VM gets its own source directory,
// StateDir/restore, with a config.json whose paths under the saved VM's state
// directory now point into the new VM's (vsock.sock, console.log; the API socket,
// the event monitor and the VMM log are command-line options, not part of the
// config), whose payload names this guest image's kernel and initramfs (the VMM
// opens them again; the snapshot key holds their digests), and whose other files
// are symlinks to the snapshot's, which the VMM only reads. Memory is restored in
// the default Copy mode without prefault: the data extents of memory-ranges are read
// into the VM's private anonymous memory during vm.restore (holes stay unallocated),
// so nothing the guest writes reaches the snapshot, and no snapshot file is open once
// the VM runs. (OnDemand would fault pages in through userfaultfd instead, and fail
// the restore where userfaultfd is not allowed; prefault would populate all of the
// guest's RAM up front.) The VM comes back paused, as it was saved, and is resumed
// with vm.resume, so that a failure names the step.
const (
	snapConfigFile = "config.json"
	snapStateFile  = "state.json"
	snapMetaFile   = "voidbox-chv.json"
	// restoreDir is the restored VM's own source directory in its state dir.
	restoreDir = "restore"
	// maxSnapConfig bounds config.json and voidbox-chv.json as read back (a VM of
	// voidbox's has a config of a few KiB).
	maxSnapConfig = 1 << 20
	// snapMetaFormat is voidbox-chv.json's layout.
	snapMetaFormat = 1
)

// snapMeta is voidbox-chv.json.
type snapMeta struct {
	Format   int    `json:"format"`
	StateDir string `json:"state_dir"` // the saved VM's, absolute
}

type snapshotConfig struct {
	DestinationURL string `json:"destination_url"`
}

// restoreConfig is the body of vm.restore (the schema's RestoreConfig). Prefault is
// sent even when false so the request says what it asks for; memory_restore_mode is
// left to its default (Copy), which VMMs older than the field also do.
type restoreConfig struct {
	SourceURL string `json:"source_url"`
	Prefault  bool   `json:"prefault"`
}

var _ runtime.Snapshotter = (*Driver)(nil)

// versionTimeout bounds `cloud-hypervisor --version`.
const versionTimeout = 10 * time.Second

// SnapshotID implements runtime.Snapshotter: "cloud-hypervisor/kvm/VERSION", the
// version `cloud-hypervisor --version` prints, since a snapshot's state is only
// restorable by the VMM that wrote it. Cloud Hypervisor has one accelerator, so the
// guest image does not enter it. The version is asked once per driver.
func (d *Driver) SnapshotID(ctx context.Context, _, _ string) (string, error) {
	d.versionMu.Lock()
	defer d.versionMu.Unlock()
	if d.version != "" {
		return d.Name() + "/" + d.version, nil
	}
	bin, err := lookBinary(d.opts.Binary)
	if err != nil {
		return "", err
	}
	vctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(vctx, bin, "--version")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(lastLine(string(ee.Stderr))))
		}
		return "", fmt.Errorf("chv: %s --version: %w", bin, err)
	}
	v, err := parseVersion(out)
	if err != nil {
		return "", fmt.Errorf("chv: %s --version: %w", bin, err)
	}
	d.version = v
	return d.Name() + "/" + v, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// maxVersion bounds the version word: it goes into snapshot keys (at most 256 bytes).
const maxVersion = 128

// parseVersion reads the first line of `cloud-hypervisor --version`,
// "cloud-hypervisor v53.0-246-gae44c297" (later lines list migration protocol
// versions and, with -v, features), and returns its version word.
func parseVersion(out []byte) (string, error) {
	line, _, _ := strings.Cut(string(out), "\n")
	fields := strings.Fields(line)
	if len(fields) != 2 || len(fields[1]) > maxVersion || !printableWord(fields[1]) {
		const maxQuote = 120
		if len(line) > maxQuote {
			line = line[:maxQuote] + "..."
		}
		return "", fmt.Errorf("first line %q is not \"cloud-hypervisor VERSION\" (a version of at most %d printable characters)", line, maxVersion)
	}
	return fields[1], nil
}

func printableWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}

// checkSnapshotConfig refuses what a snapshot cannot carry: its devices are fixed
// when it is saved.
func checkSnapshotConfig(cfg runtime.VMConfig) error {
	if len(cfg.Shares) > 0 || len(cfg.Disks) > 0 || cfg.NetworkSocket != "" {
		return fmt.Errorf("chv: vm %s: a snapshot boot or restore takes no shares, disks or network (its devices must be the snapshot's); got %d shares, %d disks, network %q",
			cfg.Name, len(cfg.Shares), len(cfg.Disks), cfg.NetworkSocket)
	}
	return nil
}

// SnapshotBoot implements runtime.Snapshotter: a Boot without shares, disks or
// network (serial file, vsock and rng, as every VM has), whose state directory is
// recorded in dir/voidbox-chv.json for Restore's rewrite of config.json. Without a
// cfg.StateDir (sandbox/vm builds snapshots with none) the VM gets a state dir of its
// own, removed with it.
func (d *Driver) SnapshotBoot(ctx context.Context, cfg runtime.VMConfig, dir string) (runtime.Machine, error) {
	if err := checkSnapshotConfig(cfg); err != nil {
		return nil, err
	}
	own := ""
	if cfg.StateDir == "" {
		var err error
		if own, err = vmstate.NewDir(); err != nil {
			return nil, fmt.Errorf("chv: snapshot boot %s: %w", cfg.Name, err)
		}
		cfg.StateDir = own
	}
	stateDir, err := filepath.Abs(cfg.StateDir)
	if err == nil {
		cfg.StateDir = stateDir
		err = writeJSONFile(filepath.Join(dir, snapMetaFile), snapMeta{Format: snapMetaFormat, StateDir: stateDir})
	}
	var m *machine
	if err == nil {
		m, err = d.boot(ctx, cfg, func(m *machine) { m.snapDir, m.ownDir = dir, own })
	}
	if err != nil {
		if own != "" {
			os.RemoveAll(own)
		}
		return nil, fmt.Errorf("chv: snapshot boot %s: %w", cfg.Name, err)
	}
	return m, nil
}

// SaveSnapshot implements runtime.Snapshotter: vm.pause, vm.snapshot into dir, then
// the VMM is shut down and reaped whatever happened.
func (d *Driver) SaveSnapshot(ctx context.Context, rm runtime.Machine, dir string) error {
	m, ok := rm.(*machine)
	if !ok || m.snapDir == "" || m.snapDir != dir {
		return fmt.Errorf("chv: save snapshot into %s: the machine was not started by SnapshotBoot with that directory", dir)
	}
	defer m.Kill()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("chv: save snapshot of vm %s: %w", m.name, err)
	}
	if err := m.api.put(ctx, "vm.pause", nil); err != nil {
		return fmt.Errorf("chv: save snapshot of vm %s: %w", m.name, err)
	}
	if err := m.api.put(ctx, "vm.snapshot", snapshotConfig{DestinationURL: "file://" + abs}); err != nil {
		return fmt.Errorf("chv: save snapshot of vm %s into %s: %w", m.name, abs, err)
	}
	// The files are complete once vm.snapshot answered: a VMM that must be killed
	// on the way out does not spoil them, so Shutdown's error is not the save's.
	sctx, cancel := context.WithTimeout(ctx, apiCallTimeout)
	_ = m.Shutdown(sctx)
	cancel()
	for _, name := range []string{snapConfigFile, snapStateFile} {
		if _, err := os.Stat(filepath.Join(abs, name)); err != nil {
			return fmt.Errorf("chv: save snapshot of vm %s: vm.snapshot answered, but: %w", m.name, err)
		}
	}
	return syncDir(abs)
}

// syncDir flushes every regular file in dir, and dir itself, to disk.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("chv: sync snapshot: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := syncPath(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return syncPath(dir)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("chv: sync snapshot: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("chv: sync snapshot %s: %w", p, err)
	}
	return nil
}

// Restore implements runtime.Snapshotter: a fresh cloud-hypervisor in cfg.StateDir
// (API socket, pid file, everything stopped on failure, as Boot), vm.restore from the
// VM's own source directory (see the top of this file), vm.resume. cfg has no
// Cmdline: the restored guest keeps the one it booted with.
func (d *Driver) Restore(ctx context.Context, cfg runtime.VMConfig, dir string) (runtime.Machine, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkSnapshotConfig(cfg); err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Cmdline) != "" {
		return nil, fmt.Errorf("chv: restore %s: VMConfig.Cmdline %q would go unread: a restored guest keeps the command line it booted with; leave it empty", cfg.Name, cfg.Cmdline)
	}
	bin, paths, err := d.prepare(cfg)
	if err != nil {
		return nil, err
	}
	src, err := prepareSource(cfg, paths, dir)
	if err != nil {
		return nil, fmt.Errorf("chv: restore %s from %s: %w", cfg.Name, dir, err)
	}
	m := newMachine(cfg.Name, paths)
	m.consoleLine = cfg.ConsoleLine
	m.restored = true
	restored := false
	defer func() {
		if !restored {
			m.abort()
		}
	}()
	removeStale(paths)
	if err := d.startVMM(ctx, m, bin); err != nil {
		return nil, err
	}
	if err := m.api.put(ctx, "vm.restore", restoreConfig{SourceURL: "file://" + src}); err != nil {
		return nil, m.bootErr("vm.restore from "+dir, err)
	}
	if err := m.api.put(ctx, "vm.resume", nil); err != nil {
		return nil, m.bootErr("vm.resume", err)
	}
	if err := m.checkRunning(ctx, "vm.resume"); err != nil {
		return nil, err
	}
	restored = true
	return m, nil
}

// prepareSource makes StateDir/restore, the restored VM's source_url: config.json
// rewritten for this VM, symlinks to the snapshot's other files.
func prepareSource(cfg runtime.VMConfig, paths vmPaths, dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	var meta snapMeta
	if err := readJSONFile(filepath.Join(dir, snapMetaFile), &meta); err != nil {
		return "", fmt.Errorf("%w (not a snapshot made by this driver's SnapshotBoot and SaveSnapshot)", err)
	}
	if meta.Format != snapMetaFormat {
		return "", fmt.Errorf("%s: format %d, want %d", filepath.Join(dir, snapMetaFile), meta.Format, snapMetaFormat)
	}
	raw, err := readBounded(filepath.Join(dir, snapConfigFile), maxSnapConfig)
	if err != nil {
		return "", err
	}
	config, err := rewriteConfig(raw, meta.StateDir, cfg, paths)
	if err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(dir, snapConfigFile), err)
	}
	src := filepath.Join(paths.Dir, restoreDir)
	if err := os.RemoveAll(src); err != nil {
		return "", err
	}
	if err := os.Mkdir(src, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, snapConfigFile), config, 0o600); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	state := false
	for _, e := range entries {
		name := e.Name()
		if name == snapConfigFile || name == snapMetaFile || !e.Type().IsRegular() {
			continue
		}
		state = state || name == snapStateFile
		if err := os.Symlink(filepath.Join(dir, name), filepath.Join(src, name)); err != nil {
			return "", err
		}
	}
	if !state {
		return "", fmt.Errorf("%s: no %s (the device state vm.snapshot writes)", dir, snapStateFile)
	}
	return src, nil
}

// readBounded reads the regular file at path, at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is a %v, not a regular file", path, st.Mode().Type())
	case st.Size() > limit:
		return nil, fmt.Errorf("%s has %d bytes, more than the %d a snapshot's %s may have", path, st.Size(), limit, filepath.Base(path))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
