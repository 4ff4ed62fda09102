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
		if err := os.Mkdir(d, 0o700); err != nil {
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

// deadOwner returns the pid of a process that has exited and been reaped.
func deadOwner(t *testing.T) int {
	t.Helper()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	return dead.Process.Pid
}

// sweepWithin runs SweepIn and fails the test if it hangs.
func sweepWithin(t *testing.T, root string) []string {
	t.Helper()
	type result struct {
		removed []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		removed, err := SweepIn(root)
		done <- result{removed, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("SweepIn: %v", r.err)
		}
		return r.removed
	case <-time.After(5 * time.Second):
		t.Fatal("SweepIn hung")
		return nil
	}
}

func TestSweepIgnoresPlantedPids(t *testing.T) {
	root := t.TempDir()
	// A dead voidbox's dir whose pids file is a FIFO nobody writes: reading it
	// would block forever.
	fifoDir := filepath.Join(root, fmt.Sprintf("voidbox-%d-fifo", deadOwner(t)))
	if err := os.Mkdir(fifoDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(fifoDir, PidsFile), 0o600); err != nil {
		t.Fatal(err)
	}
	// One whose pids file is a symlink to a file listing a live process that names
	// the dir on its command line: following it would kill that process.
	linkDir := filepath.Join(root, fmt.Sprintf("voidbox-%d-link", deadOwner(t)))
	if err := os.Mkdir(linkDir, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := exec.Command("sh", "-c", "sleep 60", linkDir)
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	elsewhere := filepath.Join(t.TempDir(), "list")
	if err := os.WriteFile(elsewhere, []byte(fmt.Sprintf("%d\n", victim.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(linkDir, PidsFile)); err != nil {
		t.Fatal(err)
	}
	removed := sweepWithin(t, root)
	// Both dirs are ours and stale: they go, but nothing listed through the FIFO
	// or the symlink was read.
	if len(removed) != 2 {
		t.Errorf("removed %v, want both stale dirs", removed)
	}
	if !alive(victim.Process.Pid) {
		t.Error("sweeper followed a symlinked pids file and killed the process it lists")
	}
	if _, err := os.Stat(elsewhere); err != nil {
		t.Errorf("the symlink's target was touched: %v", err)
	}
}

func TestSweepIgnoresDirsNotOurs(t *testing.T) {
	root := t.TempDir()
	owner := deadOwner(t)
	open := filepath.Join(root, fmt.Sprintf("voidbox-%d-open", owner))
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil { // not what NewDir makes
		t.Fatal(err)
	}
	target := t.TempDir()
	link := filepath.Join(root, fmt.Sprintf("voidbox-%d-link", owner))
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	keep := []string{open, link, target}
	if os.Geteuid() == 0 {
		// Another user's dir, planted with our naming and mode: left alone.
		foreign := filepath.Join(root, fmt.Sprintf("voidbox-%d-foreign", owner))
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, foreign)
	} else {
		t.Log("not root: the other-uid case needs chown and is not exercised")
	}
	if removed := sweepWithin(t, root); len(removed) != 0 {
		t.Errorf("removed %v; want nothing (not our dirs)", removed)
	}
	for _, d := range keep {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("%s was touched: %v", d, err)
		}
	}
}

func TestReadSmallRegular(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("1\n", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := readSmallRegular(big, maxPidsFile)
	if err != nil || len(b) != maxPidsFile {
		t.Errorf("read %d bytes, %v; want the first %d", len(b), err, maxPidsFile)
	}
	if _, err := readSmallRegular(dir, 10); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if err := os.Symlink(big, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := readSmallRegular(filepath.Join(dir, "link"), 10); err == nil {
		t.Error("followed a symlink")
	}
}
