package vm

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/syncbuf"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/snapshot"
)

// warmProvider is a provider with warm start on a test's own snapshot store.
func warmProvider(t *testing.T) (*Provider, *WarmOptions, *syncbuf.Buffer) {
	t.Helper()
	img := vmtest.Image(t)
	store, err := snapshot.Open(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	notices := &syncbuf.Buffer{}
	w := &WarmOptions{Store: store, Notice: notices}
	p, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs, Warm: w})
	if err != nil {
		t.Fatal(err)
	}
	return p, w, notices
}

// restored reports whether the sandbox's VM came from a snapshot: its console (which
// starts at the restore) has the agent's re-key line and no boot.
func restored(s *Sandbox) bool {
	c := s.Machine().ConsoleTail(1 << 16)
	return strings.Contains(c, "re-keyed after restore") && !strings.Contains(c, "boot config from")
}

func TestWarmStart(t *testing.T) {
	p, w, notices := warmProvider(t)
	spec := runtime.SandboxSpec{Name: "warm-a", MemoryMB: 256, Allow: []string{"sh", "cat", "echo"}}
	a := openWith(t, p, spec)
	if !restored(a) {
		t.Fatalf("the first stage did not start from the snapshot it built; console:\n%s\nnotices: %s", a.Machine().ConsoleTail(4096), notices)
	}
	list, err := w.Store.List()
	if err != nil || len(list) != 1 || list[0].Meta.Key.MemoryMB != 256 {
		t.Fatalf("store after the first stage: %+v, %v; want one 256 MiB snapshot", list, err)
	}
	// Stale by a few seconds: a restored guest's clock must not be.
	time.Sleep(3 * time.Second)
	spec.Name = "warm-b"
	b := openWith(t, p, spec)
	if !restored(b) {
		t.Fatalf("the second stage was not restored; console:\n%s", b.Machine().ConsoleTail(4096))
	}

	t.Run("runs a stage with its own policy", func(t *testing.T) {
		out, _, res := run(t, b, "alpha\n", "sh", "-c", "cat; id -u; hostname")
		if res.ExitCode != 0 || out != "alpha\n1000\nwarm-b\n" {
			t.Fatalf("stage output %q (exit %d), want input, uid 1000 and the stage's hostname", out, res.ExitCode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// The allow list came with the re-key.
		if _, err := b.Exec(ctx, runtime.ExecRequest{Args: []string{"uname"}}); err == nil || !strings.Contains(err.Error(), "allow") {
			t.Fatalf("uname outside the allow list = %v, want a refusal", err)
		}
	})
	t.Run("different secrets", func(t *testing.T) {
		// The handshake after each re-key is mutual: each guest proved it holds its own.
		if a.secret == "" || a.secret == b.secret {
			t.Fatalf("two VMs from one snapshot hold the same session secret")
		}
		for _, s := range []*Sandbox{a, b} {
			if s.secret == list[0].Meta.Secret {
				t.Fatalf("%s kept the snapshot's session secret", s.name)
			}
		}
	})
	t.Run("different entropy", func(t *testing.T) {
		ra, _, _ := run(t, a, "", "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1")
		rb, _, _ := run(t, b, "", "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1")
		if strings.TrimSpace(ra) == "" || ra == rb {
			t.Fatalf("two VMs from one snapshot read the same /dev/urandom bytes: %q and %q", ra, rb)
		}
	})
	t.Run("current clock", func(t *testing.T) {
		out, _, _ := run(t, b, "", "sh", "-c", "date +%s")
		guest, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("date +%%s = %q", out)
		}
		if d := time.Now().Unix() - guest; d < -2 || d > 2 {
			t.Fatalf("guest clock %d is %ds off the host's", guest, d)
		}
	})
	if s := notices.String(); s != "" {
		t.Errorf("notices during good warm starts: %s", s)
	}
}

func TestWarmSnapshotSessionRefused(t *testing.T) {
	p, w, _ := warmProvider(t)
	vmm := p.opts.VMM.(runtime.Snapshotter)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	key, err := p.snapshotKey(ctx, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := p.BuildSnapshot(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	img := vmtest.Image(t)
	m, err := vmm.Restore(ctx, runtime.VMConfig{Name: "old-session", Kernel: img.Kernel, Initramfs: img.Initramfs, MemoryMB: 256, VCPUs: 1}, snap.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = m.Kill()
		vmtest.WaitNoVMs(t, "old-session", 10*time.Second)
	}()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The snapshot's secret opens no session: the restored agent takes a re-key first.
	if _, err := proto.Connect(ctx, conn, snap.Meta.Secret); err == nil || !strings.Contains(err.Error(), "re-key") {
		t.Fatalf("a session with the snapshot's secret = %v; want a refusal naming the re-key", err)
	}
	select {
	case <-m.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the refused restored VM did not power off")
	}
	if _, err := w.Store.Load(key); err != nil {
		t.Fatalf("the snapshot itself must stay usable: %v", err)
	}
}

func TestWarmCorruptSnapshotColdBoots(t *testing.T) {
	p, w, notices := warmProvider(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	key, err := p.snapshotKey(ctx, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := p.BuildSnapshot(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(snap.Dir, "state"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("corrupt"), 100)
	f.Close()
	s := openWith(t, p, runtime.SandboxSpec{Name: "after-corrupt", MemoryMB: 256})
	if restored(s) {
		t.Fatal("a corrupt snapshot was restored")
	}
	if n := notices.String(); !strings.Contains(n, "snapshot is corrupt") || !strings.Contains(n, "cold boot") {
		t.Fatalf("notices %q; want one saying the snapshot is corrupt and the stage cold-boots", n)
	}
	if out, _, _ := run(t, s, "", "echo", "cold"); out != "cold\n" {
		t.Fatalf("the cold-booted stage said %q", out)
	}
	if _, err := w.Store.Load(key); err == nil {
		t.Fatal("the corrupt snapshot is still in the store")
	}
}
