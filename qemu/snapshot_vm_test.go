package qemu

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
)

// waitConsole waits until the console shows want.
func waitConsole(t *testing.T, m *Machine, want string) {
	t.Helper()
	deadline := time.Now().Add(runtime.BootTimeout)
	for !strings.Contains(m.ConsoleTail(1<<16), want) {
		if time.Now().After(deadline) {
			t.Fatalf("console never showed %q:\n%s", want, m.ConsoleTail(4096))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends a line to the testinit guest and reads its answer.
func ping(t *testing.T, m runtime.Machine, word string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := m.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte(word + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read the guest's answer: %v\nconsole:\n%s", err, m.ConsoleTail(4096))
	}
	return line
}

func TestSnapshotSaveRestore(t *testing.T) {
	img := testImage(t)
	v := tcgVMM(t)
	dir := t.TempDir()
	cfg := runtime.VMConfig{Name: "snap", Kernel: img.Kernel, Initramfs: img.Initramfs, MemoryMB: 256, VCPUs: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rm, err := v.SnapshotBoot(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	m := rm.(*Machine)
	t.Cleanup(func() { _ = m.Kill() })
	waitConsole(t, m, "testinit: modules loaded")
	time.Sleep(300 * time.Millisecond) // the init opens its port and waits for the host
	if err := v.SaveSnapshot(ctx, m, dir); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m)
	for _, name := range []string{snapMemoryFile, snapStateFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() == 0 || st.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file %s: %v, %v; want a non-empty 0600 file", name, st, err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, snapMemoryFile))

	// Two VMs from one snapshot, at once: each answers on its own channel.
	var restored []*Machine
	for i := range 2 {
		start := time.Now()
		r, err := v.Restore(ctx, runtime.VMConfig{Name: "restored", Kernel: img.Kernel, Initramfs: img.Initramfs, MemoryMB: 256, VCPUs: 1}, dir)
		if err != nil {
			t.Fatal(err)
		}
		rm := r.(*Machine)
		t.Cleanup(func() { _ = rm.Kill() })
		restored = append(restored, rm)
		t.Logf("restore %d running after %v", i, time.Since(start))
		if st, err := rm.Status(ctx); err != nil || st.Status != "running" {
			t.Fatalf("restored VM status %+v, %v; want running", st, err)
		}
	}
	for i, rm := range restored {
		if got := ping(t, rm, "warm"); got != "hello warm\n" {
			t.Fatalf("restored VM %d said %q, want %q", i, got, "hello warm\n")
		}
		if got := ping(t, rm, "poweroff"); got != "bye\n" {
			t.Fatalf("restored VM %d said %q to poweroff", i, got)
		}
		select {
		case <-rm.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("restored guest's poweroff did not end qemu")
		}
		assertGone(t, rm)
	}
	after, _ := os.ReadFile(filepath.Join(dir, snapMemoryFile))
	if string(before) != string(after) {
		t.Fatal("running restored VMs changed the snapshot's memory file; it must be mapped private")
	}
}

func TestRestoreCorruptStateFails(t *testing.T) {
	img := testImage(t)
	dir := t.TempDir()
	// A memory file of the right size and a state that is not a migration stream.
	if err := os.WriteFile(filepath.Join(dir, snapStateFile), []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, snapStateFile), 4096); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(dir, snapMemoryFile))
	f.Truncate(256 << 20)
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := tcgVMM(t).Restore(ctx, runtime.VMConfig{Name: "bad", Kernel: img.Kernel, Initramfs: img.Initramfs, MemoryMB: 256, VCPUs: 1}, dir)
	if err == nil {
		_ = m.Kill()
		t.Fatal("a corrupt state file restored")
	}
	if !strings.Contains(err.Error(), "restore bad from "+dir) {
		t.Fatalf("Restore error %v does not name the VM and the snapshot", err)
	}
	t.Logf("restore error: %v", err)
}
