package vmstate

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func listenTest(t *testing.T, limit int64, keep int) (*Console, string, net.Conn) {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "console.log")
	c, err := ListenConsole(filepath.Join(dir, "console.sock"), logPath, limit, keep)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", filepath.Join(dir, "console.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return c, logPath, conn
}

func TestConsoleSmallOutputKeptWhole(t *testing.T) {
	c, logPath, conn := listenTest(t, 1<<10, 64)
	if _, err := conn.Write([]byte("boot line 1\nboot line 2\n")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := c.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(logPath)
	if err != nil || string(log) != "boot line 1\nboot line 2\n" {
		t.Fatalf("log = %q, %v", log, err)
	}
	if got := c.Tail(11); got != "boot line 2\n"[1:] {
		t.Errorf("Tail(11) = %q", got)
	}
	if st, _ := os.Stat(logPath); st.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600", st.Mode().Perm())
	}
}

func TestConsoleFloodCapped(t *testing.T) {
	const limit, keep = 4 << 10, 1 << 10
	c, logPath, conn := listenTest(t, limit, keep)
	chunk := bytes.Repeat([]byte("flood "), 1000)
	for range 200 { // 1.2 MB, 300 times the limit
		if _, err := conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write([]byte("\nlast words\n")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := c.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if total := c.Total(); total != int64(200*len(chunk)+len("\nlast words\n")) {
		t.Errorf("Total = %d, want every byte counted", total)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) > limit+keep+200 {
		t.Errorf("log is %d bytes, want at most the %d-byte head, a marker and the %d-byte tail", len(log), limit, keep)
	}
	if !bytes.HasPrefix(log, chunk[:limit]) || !strings.Contains(string(log), "[voidbox: console output capped: ") || !bytes.HasSuffix(log, []byte("last words\n")) {
		t.Errorf("log is not head, marker, tail:\n%.300q...%q", log, log[max(len(log)-100, 0):])
	}
	if tail := c.Tail(1 << 20); len(tail) != keep || !strings.HasSuffix(tail, "last words\n") {
		t.Errorf("Tail = %d bytes ending %q; want the last %d bytes", len(tail), tail[max(len(tail)-20, 0):], keep)
	}
}

// Output just past the limit: the log gets the rest of it, no marker, nothing twice.
func TestConsoleJustPastLimit(t *testing.T) {
	c, logPath, conn := listenTest(t, 10, 8)
	if _, err := conn.Write([]byte("0123456789abcd")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := c.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(logPath); string(log) != "0123456789abcd" {
		t.Errorf("log = %q, want the whole output once", log)
	}
}

// A VMM that never connects (it failed to start), or one that keeps its end open
// after exiting: Close still returns.
func TestConsoleCloseDoesNotHang(t *testing.T) {
	dir := t.TempDir()
	c, err := ListenConsole(filepath.Join(dir, "s"), filepath.Join(dir, "l"), 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	c, _, conn := listenTest(t, 10, 10)
	defer conn.Close()
	start := time.Now()
	if err := c.Close(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a peer that stays connected", d)
	}
	if _, err := ListenConsole(filepath.Join(dir, "s2"), filepath.Join(dir, "l"), 10, 10); err == nil {
		t.Error("ListenConsole reused an existing log file")
	}
}
