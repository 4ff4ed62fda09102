package starlark

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// replChildEnv makes the test binary run the REPL on its terminal instead of the tests,
// so the pty test can drive a real controlling terminal (Ctrl-C becomes SIGINT).
const replChildEnv = "VOIDBOX_TEST_REPL_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(replChildEnv) == "1" {
		err := REPL(Options{Runner: &recorder{}}, os.Stdin, os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "repl:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// ansi matches the terminal control sequences readline draws with.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// screen accumulates what the pty shows and waits for text after the last match.
type screen struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	mark int
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		rest := ansi.ReplaceAllString(s.buf.String(), "")[s.mark:]
		if i := strings.Index(rest, want); i >= 0 {
			s.mark += i + len(want)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Fatalf("screen never showed %q after:\n%s", want, ansi.ReplaceAllString(s.buf.String(), "")[s.mark:])
}

func TestREPLOnTerminal(t *testing.T) {
	home := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), replChildEnv+"=1", "HOME="+home)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Skipf("this machine cannot open a pseudo-terminal: %v", err)
	}
	defer tty.Close()
	scr := &screen{}
	go func() { _, _ = io.Copy(scr, tty) }()
	typeKeys := func(s string) {
		if _, err := tty.Write([]byte(s)); err != nil {
			t.Fatalf("type %q: %v", s, err)
		}
	}

	scr.expect(t, ">>> ")
	typeKeys("1+2\r")
	scr.expect(t, "3\r\n")
	scr.expect(t, ">>> ")

	// A def continues on "... " lines until an empty line; globals persist.
	typeKeys("def sq(x):\r")
	scr.expect(t, "... ")
	typeKeys("    return x*x\r")
	scr.expect(t, "... ")
	typeKeys("\r")
	scr.expect(t, ">>> ")
	typeKeys("sq(7)\r")
	scr.expect(t, "49\r\n")
	scr.expect(t, ">>> ")

	// Statements print nothing; None is not printed.
	typeKeys("y = sq(3)\r")
	scr.expect(t, ">>> ")
	typeKeys("None\r")
	scr.expect(t, ">>> ")
	typeKeys("y\r")
	scr.expect(t, "9\r\n")
	scr.expect(t, ">>> ")

	// Ctrl-C cancels a busy loop and the REPL goes on.
	typeKeys("while True:\r")
	scr.expect(t, "... ")
	typeKeys("    pass\r")
	scr.expect(t, "... ")
	typeKeys("\r")
	time.Sleep(300 * time.Millisecond)
	typeKeys("\x03")
	scr.expect(t, "<stdin>:")
	scr.expect(t, "Starlark computation cancelled: interrupted")
	scr.expect(t, ">>> ")

	// Ctrl-C while typing discards the input.
	typeKeys("sq(")
	typeKeys("\x03")
	scr.expect(t, "^C")
	scr.expect(t, ">>> ")
	typeKeys("2*21\r")
	scr.expect(t, "42\r\n")
	scr.expect(t, ">>> ")

	// Errors are formatted and the REPL survives; run() works through the runner.
	typeKeys("undefined_name\r")
	scr.expect(t, "<stdin>:1:1: undefined: undefined_name")
	scr.expect(t, ">>> ")
	typeKeys("run(box(name = \"a\", cmd = [\"true\"])).ok\r")
	scr.expect(t, "True\r\n")
	scr.expect(t, ">>> ")

	if os.Getenv("DUMP") != "" {
		t.Log(ansi.ReplaceAllString(scr.buf.String(), ""))
	}
	// Ctrl-D exits with status 0 and the history file has the inputs.
	typeKeys("\x04")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("REPL exited with %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("REPL did not exit on Ctrl-D")
	}
	hist, err := os.ReadFile(home + "/" + HistoryFile)
	if err != nil || !strings.Contains(string(hist), "sq(7)") {
		t.Errorf("history file: %q, %v; want it to contain sq(7)", hist, err)
	}
}

func TestREPLFromPipe(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	in := strings.NewReader("1+2\ndef f(x):\n    return x + 1\n\nf(4)\nprint('hi')\nargs\nx = 1 // 0\n\"after\"\nload('@stdlib//text.star', 'upper')\nupper().name\n")
	var out, errOut bytes.Buffer
	if err := REPL(Options{Args: map[string]string{"k": "v"}}, in, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3\n", "5\n", "hi\n", "{\"k\": \"v\"}\n", "\"after\"\n", "\"upper\"\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stdout %q lacks %q", out.String(), want)
		}
	}
	if want := "<stdin>:1:7: floored division by zero\n"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}
