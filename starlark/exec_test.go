package starlark

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	sk "go.starlark.net/starlark"
)

func printInto(lines *[]string) func(*sk.Thread, string) {
	return func(_ *sk.Thread, msg string) { *lines = append(*lines, msg) }
}

func TestExecFileArgsFrozen(t *testing.T) {
	inTempDir(t, map[string]string{
		"main.star": `
print(args["who"], len(args))
def mutate():
    args["x"] = "y"
mutate()
`,
	})
	var out []string
	_, err := ExecFile("main.star", Options{Args: map[string]string{"who": "world"}, Print: printInto(&out)})
	if strings.Join(out, "|") != "world 1" {
		t.Errorf("print output = %q, want [\"world 1\"]", out)
	}
	want := "main.star:4:9: cannot insert into frozen hash table\nTraceback (most recent call last):\n  main.star:5:7: in <toplevel>\n  main.star:4:9: in mutate"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}

func TestExecFilePipelineGlobal(t *testing.T) {
	inTempDir(t, map[string]string{
		"p.star": `
a = box(name = "a", cmd = ["echo", "hi"])
b = box(name = "b", cmd = ["tr", "a-z", "A-Z"])
pipeline = pipe(a, b)
`,
		"none.star": `x = 1`,
		"bad.star":  `pipeline = 3`,
	})
	prog, err := ExecFile("p.star", Options{})
	if err != nil {
		t.Fatal(FormatError(err))
	}
	p, ok := prog.Pipeline.(*runtime.Pipe)
	if !ok || len(p.Nodes) != 2 {
		t.Fatalf("Pipeline = %#v, want a pipe of 2 nodes", prog.Pipeline)
	}
	if got := p.Stages()[1].Name; got != "b" {
		t.Errorf("second stage = %q, want b", got)
	}
	if prog.RanGraphs != 0 {
		t.Errorf("RanGraphs = %d, want 0", prog.RanGraphs)
	}

	prog, err = ExecFile("none.star", Options{})
	if err != nil || prog.Pipeline != nil {
		t.Errorf("no pipeline global: got %v, %v; want nil, nil", prog.Pipeline, err)
	}
	if _, err := ExecFile("bad.star", Options{}); err == nil || !strings.HasPrefix(err.Error(), "bad.star: global pipeline: ") {
		t.Errorf("pipeline = 3: err = %v, want one starting with \"bad.star: global pipeline: \"", err)
	}
}

func TestExecFileRunCounts(t *testing.T) {
	inTempDir(t, map[string]string{
		"r.star": `
r1 = run(box(name = "a", cmd = ["true"]))
r2 = run(pipe(box(name = "b", cmd = ["true"]), box(name = "c", cmd = ["cat"])))
print(r1.ok, r2.output.strip())
`,
	})
	rec := &recorder{}
	var out []string
	prog, err := ExecFile("r.star", Options{Runner: rec, Print: printInto(&out)})
	if err != nil {
		t.Fatal(FormatError(err))
	}
	if prog.RanGraphs != 2 || len(rec.graphs) != 2 {
		t.Errorf("RanGraphs = %d, recorded %d graphs; want 2 and 2", prog.RanGraphs, len(rec.graphs))
	}
	if strings.Join(out, "|") != "True recorded" {
		t.Errorf("print output = %q", out)
	}
}

func TestExecFileNoRunner(t *testing.T) {
	inTempDir(t, map[string]string{"r.star": `run(box(name = "a", cmd = ["true"]))`})
	_, err := ExecFile("r.star", Options{})
	if err == nil || !strings.Contains(err.Error(), "no runner is configured") {
		t.Errorf("err = %v, want the no-runner error", err)
	}
}

func TestExecFileCancelBusyLoop(t *testing.T) {
	inTempDir(t, map[string]string{"loop.star": "n = 0\nwhile True:\n    n += 1\n"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := ExecFile("loop.star", Options{Context: ctx})
		done <- err
	}()
	select {
	case err := <-done:
		var ev *sk.EvalError
		if !errors.As(err, &ev) || !strings.Contains(ev.Msg, "cancelled") {
			t.Fatalf("err = %v, want a cancellation EvalError", err)
		}
		// The position is wherever the loop was when the flag was seen.
		if got := FormatError(err); !strings.HasPrefix(got, "loop.star:") || !strings.HasSuffix(got, ": Starlark computation cancelled: context canceled") {
			t.Errorf("FormatError = %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("busy loop still running 5s after cancel")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

func TestExecFileCancelledBeforeLoad(t *testing.T) {
	// A module loaded after cancellation must not start running.
	inTempDir(t, map[string]string{
		"main.star": "load(\"lib.star\", \"x\")\n",
		"lib.star":  "x = 1\n",
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	time.Sleep(10 * time.Millisecond) // let the watcher record the cancellation
	_, err := ExecFile("main.star", Options{Context: ctx})
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("err = %v, want cancellation", err)
	}
}

func TestExecFileTooLarge(t *testing.T) {
	inTempDir(t, map[string]string{"big.star": strings.Repeat("#", MaxFileSize+1)})
	_, err := ExecFile("big.star", Options{})
	if err == nil || err.Error() != "big.star: file is larger than the 4 MiB limit for .star files" {
		t.Errorf("err = %v", err)
	}
	// A loaded module's size error does not repeat the name load() already gives.
	_, err = ExecSource("main.star", []byte("load(\"big.star\", \"x\")\n"), Options{})
	if got := FormatError(err); got != "main.star:1:1: cannot load big.star: file is larger than the 4 MiB limit for .star files" {
		t.Errorf("load error = %q", got)
	}
}

// TestExecFileUnreadable checks that each way a program file can be unusable gives
// one message that names the path once.
func TestExecFileUnreadable(t *testing.T) {
	dir := inTempDir(t, nil)
	if err := os.Mkdir(filepath.Join(dir, "d.star"), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"nope.star": "nope.star: no such file",
		"d.star":    "d.star: it is a directory, not a .star file",
	} {
		_, err := ExecFile(file, Options{})
		if got := FormatError(err); got != want {
			t.Errorf("ExecFile(%s) = %q, want %q", file, got, want)
		}
	}
	// Tests run as root here, where no file is unreadable: check the wording directly.
	denied := NewFileError("u.star", &fs.PathError{Op: "open", Path: "u.star", Err: syscall.EACCES})
	if denied.Error() != "u.star: permission denied" || !errors.Is(denied, fs.ErrPermission) {
		t.Errorf("permission error = %q", denied)
	}
	other := NewFileError("u.star", &fs.PathError{Op: "read", Path: "u.star", Err: syscall.EIO})
	if other.Error() != "u.star: input/output error" {
		t.Errorf("I/O error = %q", other)
	}
}
