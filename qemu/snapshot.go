package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// Warm start under QEMU. A snapshot is two files:
//
//   - memory: the guest's RAM. The snapshot boot backs RAM with this file, shared
//     (memory-backend-file,share=on), so the guest's pages are in it when it is paused.
//     A restore maps it private (share=off): copy-on-write, so a stage never changes the
//     snapshot, and nothing is read that the guest does not touch.
//   - state: the device state, saved with the x-ignore-shared migration capability, so
//     the stream leaves the shared RAM out (tens of KiB instead of the guest's memory).
//
// QEMU 7.2 has no file: migration URI and its seccomp policy (spawn=deny) forbids
// exec:, so both ends use file descriptors: the save passes the state file over QMP
// (getfd), the restore gives it to QEMU as fd 3 and starts the incoming migration with
// migrate-incoming fd:3 (-incoming defer first, since the capability must be set on
// the destination too). Measured under TCG with a 256 MiB guest: the save takes ~15 ms,
// a restore is running ~60 ms after QEMU starts, against ~1.8 s for the cold boot.
const (
	snapMemoryFile = "memory"
	snapStateFile  = "state"
	// migrationFD is where a restoring QEMU finds the state file (ExtraFiles[0]).
	migrationFD = 3
)

// snapLaunch is what a snapshot boot or a restore adds to a launch.
type snapLaunch struct {
	memFile string   // non-empty: RAM is this file, shared (snapshot boot) or private (restore)
	shared  bool     // map memFile shared: the guest's writes land in it
	state   *os.File // non-nil: restore from this device state (passed as fd 3)
}

// memoryArgs adds guest RAM's backend: a shareable memfd for vhost-user (virtiofsd
// needs the guest's memory), or the snapshot's memory file.
func memoryArgs(cfg runtime.VMConfig, l launch, machine string, args []string) (string, []string, error) {
	if l.snap.memFile != "" {
		if len(cfg.Shares) > 0 || len(cfg.Disks) > 0 || cfg.NetworkSocket != "" {
			return "", nil, fmt.Errorf("vm %s: a snapshot boot or restore takes no shares, disks or network (its devices must be the snapshot's); got %d shares, %d disks, network %q", cfg.Name, len(cfg.Shares), len(cfg.Disks), cfg.NetworkSocket)
		}
		share := "off"
		if l.snap.shared {
			share = "on"
		}
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", cfg.MemoryMB, optValue(l.snap.memFile), share))
		if l.snap.state != nil {
			args = append(args, "-incoming", "defer")
		}
		return machine + ",memory-backend=mem", args, nil
	}
	if len(cfg.Shares) > 0 {
		// vhost-user needs guest RAM in a shareable memfd.
		machine += ",memory-backend=mem"
		args = append(args, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", cfg.MemoryMB))
	}
	return machine, args, nil
}

// extraFiles are the files QEMU inherits from fd 3 on.
func (l launch) extraFiles() []*os.File {
	if l.snap.state != nil {
		return []*os.File{l.snap.state}
	}
	return nil
}

// SnapshotID implements runtime.Snapshotter: "qemu/ACCEL" and QEMU's version line,
// since a device state is only loadable by the QEMU that saved it.
func (v *VMM) SnapshotID(ctx context.Context, kernel, initramfs string) (string, error) {
	accel, err := v.Accel(ctx, kernel, initramfs)
	if err != nil {
		return "", err
	}
	_, version, err := qemuVersion(v.opts.Binary)
	if err != nil {
		return "", err
	}
	return "qemu/" + accel + " " + version, nil
}

// SnapshotBoot implements runtime.Snapshotter: a Boot whose RAM is dir/memory, shared.
func (v *VMM) SnapshotBoot(ctx context.Context, cfg runtime.VMConfig, dir string) (runtime.Machine, error) {
	mem := filepath.Join(dir, snapMemoryFile)
	f, err := os.OpenFile(mem, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot boot %s: %w", cfg.Name, err)
	}
	err = f.Truncate(int64(cfg.MemoryMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot boot %s: size %s: %w", cfg.Name, mem, err)
	}
	return v.bootMachine(ctx, cfg, snapLaunch{memFile: mem, shared: true})
}

// SaveSnapshot implements runtime.Snapshotter: it pauses m, saves its device state to
// dir/state (its RAM is dir/memory already) and kills it.
func (v *VMM) SaveSnapshot(ctx context.Context, rm runtime.Machine, dir string) error {
	m, ok := rm.(*Machine)
	if !ok || m.l.snap.memFile != filepath.Join(dir, snapMemoryFile) || !m.l.snap.shared {
		return fmt.Errorf("save snapshot into %s: the machine was not started by SnapshotBoot with that directory", dir)
	}
	defer m.Kill()
	statePath := filepath.Join(dir, snapStateFile)
	state, err := os.OpenFile(statePath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("save snapshot of vm %s: %w", m.cfg.Name, err)
	}
	defer state.Close()
	err = qmpSession(ctx, m.l.path(qmpFile), func(q *qmpConn) error {
		if _, err := q.run("migrate-set-capabilities", ignoreShared, nil); err != nil {
			return err
		}
		if _, err := q.run("stop", nil, nil); err != nil {
			return err
		}
		if _, err := q.run("getfd", map[string]any{"fdname": "snapshot"}, state); err != nil {
			return err
		}
		if _, err := q.run("migrate", map[string]any{"uri": "fd:snapshot"}, nil); err != nil {
			return err
		}
		return q.awaitMigration(ctx)
	})
	if err != nil {
		return fmt.Errorf("save snapshot of vm %s: %w", m.cfg.Name, err)
	}
	_ = m.Kill()
	// Kill waited for QEMU's exit: the shared RAM's pages are all in the file now.
	for _, p := range []string{statePath, filepath.Join(dir, snapMemoryFile)} {
		if err := syncFile(p); err != nil {
			return fmt.Errorf("save snapshot of vm %s: %w", m.cfg.Name, err)
		}
	}
	return nil
}

// Restore implements runtime.Snapshotter: a fresh QEMU with the snapshot's device
// model, RAM mapped private from dir/memory, device state loaded from dir/state; it
// returns once the guest runs again. cfg must not carry a boot config (voidbox.boot=):
// the guest read its own before it was saved, and an item added to fw_cfg would not
// change the device set (the fw_cfg device is microvm's own) but would go unread.
func (v *VMM) Restore(ctx context.Context, cfg runtime.VMConfig, dir string) (runtime.Machine, error) {
	state, err := os.Open(filepath.Join(dir, snapStateFile))
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", cfg.Name, err)
	}
	// QEMU has its own copy once started.
	defer state.Close()
	m, err := v.bootMachine(ctx, cfg, snapLaunch{memFile: filepath.Join(dir, snapMemoryFile), state: state})
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", cfg.Name, err)
	}
	err = qmpSession(ctx, m.l.path(qmpFile), func(q *qmpConn) error {
		if _, err := q.run("migrate-set-capabilities", ignoreShared, nil); err != nil {
			return err
		}
		if _, err := q.run("migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", migrationFD)}, nil); err != nil {
			return err
		}
		return q.awaitIncoming(ctx, m.done)
	})
	if err != nil {
		_ = m.Kill()
		if merr := m.Err(); merr != nil && !errors.Is(merr, ErrKilled) {
			err = fmt.Errorf("%w (%v)", err, merr)
		}
		return nil, fmt.Errorf("restore %s from %s: %w\nqemu stderr:\n%s", cfg.Name, dir, err, lastBytes(m.stderr.String(), errTailBytes))
	}
	return m, nil
}

var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// qmpConn is one QMP connection running several commands: the fd a getfd passes
// belongs to the monitor session that received it.
type qmpConn struct {
	conn *net.UnixConn
	rd   *bufio.Reader
}

// run sends one command, with file's descriptor attached when it is not nil.
func (q *qmpConn) run(command string, args any, file *os.File) (json.RawMessage, error) {
	if file == nil {
		return qmpExchange(q.conn, q.rd, command, args)
	}
	return qmpExchange(fdWriter{q.conn, file}, q.rd, command, args)
}

// fdWriter sends its file's descriptor with the first write (SCM_RIGHTS).
type fdWriter struct {
	*net.UnixConn
	file *os.File
}

func (w fdWriter) Write(p []byte) (int, error) {
	n, _, err := w.UnixConn.WriteMsgUnix(p, syscall.UnixRights(int(w.file.Fd())), nil)
	return n, err
}

// statusPoll paces the waits for a migration's end.
const statusPoll = 2 * time.Millisecond

// awaitMigration waits until the outgoing migration completed.
func (q *qmpConn) awaitMigration(ctx context.Context) error {
	for {
		raw, err := q.run("query-migrate", nil, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-migrate reply: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(statusPoll):
		}
	}
}

// awaitIncoming waits until the incoming migration loaded, then resumes the guest: it
// was paused when saved, so it comes back paused.
func (q *qmpConn) awaitIncoming(ctx context.Context, exited <-chan struct{}) error {
	for {
		raw, err := q.run("query-status", nil, nil)
		if err != nil {
			return err
		}
		var st Status
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-status reply: %w", err)
		}
		switch st.Status {
		case "inmigrate":
		case "paused", "postmigrate", "prelaunch":
			_, err := q.run("cont", nil, nil)
			return err
		case "running":
			return nil
		default:
			return fmt.Errorf("the restored VM is %q, want paused or running", st.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("qemu exited while loading the snapshot")
		case <-time.After(statusPoll):
		}
	}
}

var _ runtime.Snapshotter = (*VMM)(nil)
