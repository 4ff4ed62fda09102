package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inDir makes dir the working directory so file names in messages stay short.
func inDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	t.Chdir(dir)
	return dir
}

// TestCheckStopsWhereResultsAreUsed: check never fails a program that exec would run.
// It validates every graph it reaches and says where later code depends on a result
// only exec knows, instead of running that code on invented values.
func TestCheckStopsWhereResultsAreUsed(t *testing.T) {
	inDir(t, map[string]string{
		"c.star": `b = box(name = "b", cmd = ["echo", "3"])
n = int(run(b).output.strip())
print("never printed", n)
`,
		"shown.star": `r = run(box(name = "b", cmd = ["echo"]))
print(r)
pipeline = box(name = "p", cmd = ["true"])
`,
	})
	r := voidbox(t, "check", "c.star")
	wantOut := `# run() call 1: 1 stage
b  cmd=["echo" "3"] memory=512MiB vcpus=1 network=off timeout=10m0s retries=0 on_failure=stop
c.star:2:15: check stops here: this line uses the result of the run() at c.star:2:12, which only exec knows (no stage runs under check)
c.star: ok as far as check can see (every graph above is valid)
`
	if r.code != exitOK || r.stdout != wantOut || r.stderr != "" {
		t.Errorf("check c.star: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, wantOut, r.stderr)
	}

	// print() of a result says it did not run; a program that runs to its end is
	// checked as before, and an ignored pipeline is pointed out.
	r = voidbox(t, "check", "shown.star")
	wantErr := "<result of run() at shown.star:1:8: not run>\nvoidbox: warning: shown.star defines a global `pipeline` and also calls run(); `pipeline` runs only when the program makes no run() call, so it is ignored\n"
	if r.code != exitOK || r.stderr != wantErr || !strings.HasSuffix(r.stdout, "shown.star: ok\n") || strings.Contains(r.stdout, "# pipeline") {
		t.Errorf("check shown.star: exit %d\nstdout:\n%s\nstderr:\n%s\nwant stderr:\n%s", r.code, r.stdout, r.stderr, wantErr)
	}
}

// TestCheckFailureExample: examples/failure.star branches on a result; check stops at
// the branch instead of printing "flaky succeeded" for a stage that never ran.
func TestCheckFailureExample(t *testing.T) {
	r := voidbox(t, "check", "examples/failure.star")
	if r.code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, "succeeded") || strings.Contains(r.stderr, "run ok") {
		t.Errorf("check ran code that depends on a result: stderr %q", r.stderr)
	}
	want := "examples/failure.star:16:22: check stops here: this line uses the result of the run() at examples/failure.star:14:13, which only exec knows (no stage runs under check)\n"
	if !strings.Contains(r.stdout, "# run() call 1: 2 stages\nfan_out\n") || !strings.Contains(r.stdout, want) {
		t.Errorf("stdout:\n%s\nwant the fan_out graph and %q", r.stdout, want)
	}
}

// TestCheckProgramErrors pins the messages of programs that are wrong, whatever runs.
func TestCheckProgramErrors(t *testing.T) {
	dir := inDir(t, map[string]string{
		"empty_prog.star": `pipeline = box(name = "x", cmd = ["", "x"])` + "\n",
		"empty_arg.star":  `pipeline = box(name = "x", cmd = ["printf", ""])` + "\n",
		"dup.star": `load("@stdlib//text.star", "upper")
pipeline = pipe(upper(name = "x"), upper(name = "x"))
`,
		"head.star": `load("@stdlib//text.star", "head")
pipeline = head(n = -1)
`,
		"latin1.star":   "pipeline = box(name = \"x\", cmd = [\"echo\", \"caf\xe9\"])\n",
		"bom.star":      "\xef\xbb\xbfpipeline = box(name = \"x\", cmd = [\"echo\"], vcpus = 0)\n",
		"bom_ok.star":   "\xef\xbb\xbfpipeline = box(name = \"x\", cmd = [\"echo\"])\n",
		"load_dir.star": `load("d.star", "x")` + "\n",
		"kwarg.star":    `run(box(name = "a", cmd = ["x"]), foo = 1)` + "\n",
		"deep.star": `g = box(name = "a", cmd = ["x"])
for i in range(1000):
    g = pipe(g)
`,
	})
	if err := os.Mkdir(filepath.Join(dir, "d.star"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file, stderr string
		code         int
	}{
		{"empty_prog.star", "empty_prog.star:1:15: box: cmd[0] must not be empty (the program to run)\n", exitUsage},
		{"empty_arg.star", "", exitOK},
		{"dup.star", `dup.star: global pipeline: stage name "x" is used by two boxes (declared at dup.star:2:22 and dup.star:2:41); stage names must be unique within a graph` + "\n", exitUsage},
		{"head.star", "head.star:2:16: head: n must be a non-negative int, got -1\nTraceback (most recent call last):\n  head.star:2:16: in <toplevel>\n  @stdlib//text.star:40:13: in head\n", exitUsage},
		{"latin1.star", "latin1.star:1:47: source is not valid UTF-8\n", exitUsage},
		{"bom.star", "bom.star:1:15: box: vcpus must be between 1 and 64, got 0\n", exitUsage},
		{"bom_ok.star", "", exitOK},
		{"d.star", "d.star: it is a directory, not a .star file\n", exitUsage},
		{"nope.star", "nope.star: no such file\n", exitUsage},
		{"load_dir.star", "load_dir.star:1:1: cannot load d.star: it is a directory, not a .star file\n", exitUsage},
		{"kwarg.star", `kwarg.star:1:4: run: unexpected keyword argument "foo"; pass the graph as the only positional argument, run(graph)` + "\n", exitUsage},
		{"deep.star", "deep.star:3:13: pipe: the graph would nest pipe/fan_out 65 levels deep; at most 64 levels are allowed\n", exitUsage},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			r := voidbox(t, "check", c.file)
			if r.code != c.code || r.stderr != c.stderr {
				t.Errorf("exit %d, want %d\nstderr:\n%s\nwant:\n%s", r.code, c.code, r.stderr, c.stderr)
			}
		})
	}
}
