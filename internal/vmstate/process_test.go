package vmstate

import (
	"bufio"
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

const childEnv = "VOIDBOX_VMSTATE_TEST_CHILD"

// TestStartPinnedChild is the child half of TestStartPinnedDiesWithParent: it
// starts a sleep with StartPinned, reports its pid and waits to be killed.
func TestStartPinnedChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("helper process for TestStartPinnedDiesWithParent")
	}
	cmd := exec.Command("sleep", "60")
	start := StartPinned
	switch os.Getenv(childEnv) {
	case "setuid", "setuid-lifeline":
		// The process drops to nobody itself, as QEMU's -runas does.
		cmd = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "60")
		if os.Getenv(childEnv) == "setuid-lifeline" {
			start = StartPinnedAcrossSetuid
		}
	}
	if _, err := start(cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.Args[0] == "setpriv" {
		// Report only once the uid changed: the death signal is forgotten then.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(readStatus(cmd.Process.Pid), "Uid:\t65534"); {
			if time.Now().After(deadline) {
				t.Fatalf("setpriv did not change its uid: %s", readStatus(cmd.Process.Pid))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	fmt.Printf("PID %d\n", cmd.Process.Pid)
	time.Sleep(time.Minute)
}

func TestStartPinnedDiesWithParent(t *testing.T) {
	if pid := startChildAndKillIt(t, "1"); pid != 0 && !diesWithin(pid, 10*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d outlived the SIGKILLed process that started it", pid)
	}
}

// A process that changes its uid after the start loses the kernel's death
// signal; the lifeline still kills it when voidbox dies.
func TestStartPinnedAcrossSetuidDiesWithParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a process can change its uid only when started by root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux) to change uid after the start")
	}
	// Without the lifeline, the setup does lose the death signal (else this test
	// would prove nothing).
	if pid := startChildAndKillIt(t, "setuid"); pid != 0 {
		if diesWithin(pid, 2*time.Second) {
			t.Fatalf("process %d died with its parent although it changed uid: the test cannot show the lifeline's effect", pid)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if pid := startChildAndKillIt(t, "setuid-lifeline"); pid != 0 && !diesWithin(pid, 10*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d changed uid and outlived the SIGKILLed voidbox despite the lifeline", pid)
	}
}

func diesWithin(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// startChildAndKillIt runs TestStartPinnedChild in mode, reads the pid it
// started, SIGKILLs the child and returns that pid.
func startChildAndKillIt(t *testing.T, mode string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStartPinnedChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "PID %d", &pid); err == nil {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if pid == 0 {
		t.Fatal("child did not report the pid it started")
	}
	return pid
}

func TestStartPinnedOwnGroupAndWait(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	exited, err := StartPinned(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !cmd.SysProcAttr.Setpgid || cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Fatalf("SysProcAttr = %+v, want Setpgid and Pdeathsig SIGKILL", cmd.SysProcAttr)
	}
	var ee *exec.ExitError
	if err := <-exited; !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("wait = %v, want exit status 3", err)
	}

	sleeper := exec.Command("sleep", "60")
	if _, err := StartPinned(sleeper); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill() }()
	if pgid, err := syscall.Getpgid(sleeper.Process.Pid); err != nil || pgid != sleeper.Process.Pid {
		t.Fatalf("pgid of %d = %d, %v; want its own group", sleeper.Process.Pid, pgid, err)
	}
}

func TestStartPinnedReportsStartError(t *testing.T) {
	_, err := StartPinned(exec.Command(filepath.Join(t.TempDir(), "missing")))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("start of a missing binary = %v, want an error naming it", err)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink and a FIFO are not read (a FIFO without a writer would block).
	if err := os.Symlink(path, filepath.Join(filepath.Dir(path), "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(filepath.Dir(path), "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		n    int
		want string
	}{
		{path, 4, "6789"},
		{path, 10, "0123456789"},
		{path, 100, "0123456789"},
		{path, 0, ""},
		{path, -1, ""},
		{path + ".missing", 4, ""},
		{filepath.Join(filepath.Dir(path), "link"), 4, ""},
		{filepath.Join(filepath.Dir(path), "fifo"), 4, ""},
	} {
		if got := Tail(c.path, c.n); got != c.want {
			t.Errorf("Tail(%s, %d) = %q, want %q", filepath.Base(c.path), c.n, got, c.want)
		}
	}
}

// alive is true while pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

func readStatus(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return string(b)
}
