package vmstate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewDirAndPids(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := NewDir()
	if err != nil {
		t.Fatal(err)
	}
	if base := filepath.Base(dir); !strings.HasPrefix(base, Prefix(os.Getpid())) || filepath.Dir(dir) != os.TempDir() {
		t.Fatalf("NewDir = %s, want %s/%s*", dir, os.TempDir(), Prefix(os.Getpid()))
	}
	if owner, ok := ownerPid(filepath.Base(dir)); !ok || owner != os.Getpid() {
		t.Fatalf("ownerPid(%s) = %d, %v; want this process", filepath.Base(dir), owner, ok)
	}
	if err := WritePids(dir, []int{12, 345}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, PidsFile))
	if err != nil || string(raw) != "12\n345\n" {
		t.Fatalf("pids file = %q, %v; want \"12\\n345\\n\"", raw, err)
	}
	// Its own directories are never swept, whatever their pids file says.
	if removed, err := Sweep(); err != nil || len(removed) != 0 {
		t.Fatalf("Sweep = %v, %v; want nothing removed", removed, err)
	}
	if err := WritePids(filepath.Join(dir, "nonexistent"), nil); err == nil || !strings.Contains(err.Error(), "record VM pids") {
		t.Fatalf("WritePids into a missing dir = %v, want a wrapped error", err)
	}
}

func TestOwnerPid(t *testing.T) {
	for in, want := range map[string]int{"voidbox-123-abc": 123, "voidbox-x-1": 0, "voidbox_test_debs": 0, "voidbox-0-a": 0, "other-1-2": 0} {
		if got, _ := ownerPid(in); got != want {
			t.Errorf("ownerPid(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestParsePids(t *testing.T) {
	got := parsePids([]byte("12\n 34 \n\n0\n-1\nx\n56"))
	if fmt.Sprint(got) != "[12 34 56]" {
		t.Fatalf("parsePids = %v, want [12 34 56]", got)
	}
}

func FuzzParsePids(f *testing.F) {
	f.Add([]byte("123\n456\n"))
	f.Add([]byte("0\n-1\n 7 \n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, p := range parsePids(raw) {
			if p <= 0 {
				t.Fatalf("non-positive pid %d", p)
			}
		}
	})
}

func TestSweepKillsListedProcesses(t *testing.T) {
	root := t.TempDir()
	// A dead owner: a child that has exited and been reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadDir := filepath.Join(root, fmt.Sprintf("voidbox-%d-abc", dead.Process.Pid))
	liveDir := filepath.Join(root, fmt.Sprintf("voidbox-%d-def", os.Getppid()))
	otherDir := filepath.Join(root, "voidbox-cache-x")
	for _, d := range []string{deadDir, liveDir, otherDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A stand-in VM process whose command line names the state dir, and an
	// unrelated process whose pid is also listed (as if the pid were reused).
	vm := exec.Command("sh", "-c", "sleep 60", deadDir)
	bystander := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{vm, bystander} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = bystander.Process.Kill(); _ = bystander.Wait() }()
	if err := WritePids(deadDir, []int{vm.Process.Pid, bystander.Process.Pid}); err != nil {
		t.Fatal(err)
	}
	removed, err := SweepIn(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != deadDir {
		t.Fatalf("SweepIn removed %v, want only %s", removed, deadDir)
	}
	done := make(chan error, 1)
	go func() { done <- vm.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("stand-in VM ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		_ = vm.Process.Kill()
		t.Fatal("sweeper did not kill the listed VM process")
	}
	if !alive(bystander.Process.Pid) {
		t.Fatal("sweeper killed a process whose command line does not name the state dir")
	}
	for _, d := range []string{liveDir, otherDir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("sweeper removed %s: %v", d, err)
		}
	}
}
