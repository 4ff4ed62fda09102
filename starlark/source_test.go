package starlark

import (
	"strings"
	"testing"

	"github.com/voidbox/voidbox/builtins"
)

func TestSourceEncoding(t *testing.T) {
	cases := []struct {
		name, src, want string // want "" means the program runs and prints "ok"
	}{
		{"latin-1 in a string", "x = 1\nprint(\"caf\xe9\")\n", "p.star:2:11: source is not valid UTF-8"},
		{"utf-8 in a string", "x = 1\nprint(\"caf\xc3\xa9\" and \"ok\")\n", ""},
		{"after multibyte runes", "# \xc3\xa9\xc3\xa9\xff\n", "p.star:1:5: source is not valid UTF-8"},
		{"crlf lines", "x = 1\r\ny = 2\r\n\x80\r\n", "p.star:3:1: source is not valid UTF-8"},
		{"lone cr is a line", "x = 1\ry = 2\r\x80", "p.star:3:1: source is not valid UTF-8"},
		{"truncated rune", "print('ok')\n#\xe2\x82", "p.star:2:2: source is not valid UTF-8"},
		{"surrogate", "#\xed\xa0\x80\n", "p.star:1:2: source is not valid UTF-8"},
		{"bom skipped", "\xef\xbb\xbfprint('ok')\n", ""},
		// Columns on line 1 count from the first character after the BOM.
		{"bom then error", "\xef\xbb\xbfx = )\n", "p.star:1:5: syntax error: unexpected ')'"},
		{"bom then bad byte", "\xef\xbb\xbf\xff", "p.star:1:1: source is not valid UTF-8"},
		// go.starlark.net would stop at the NUL and run only print(1).
		{"nul in a comment", "print(1)\n# \x00\nprint(2)\n", "p.star:2:3: source contains a NUL byte"},
		{"nul in a string", "s = '\xc3\xa9\x00'\n", "p.star:1:7: source contains a NUL byte"},
		{"nul after crlf", "x = 1\r\n\x00", "p.star:2:1: source contains a NUL byte"},
		{"nul before bad byte", "\x00\xff", "p.star:1:1: source contains a NUL byte"},
		{"bad byte before nul", "\xff\x00", "p.star:1:1: source is not valid UTF-8"},
		{"bom then nul", "\xef\xbb\xbfx\x00", "p.star:1:2: source contains a NUL byte"},
		{"bom not at start", "print('ok')\n\xef\xbb\xbf\n", "p.star:2:1: syntax error: unexpected input character '\\ufeff'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out []string
			_, err := ExecSource("p.star", []byte(c.src), Options{Print: printInto(&out)})
			got := FormatError(err)
			if got != c.want {
				t.Fatalf("error %q, want %q", got, c.want)
			}
			if c.want == "" && strings.Join(out, "|") != "ok" {
				t.Fatalf("output %q, want ok", out)
			}
		})
	}
}

// TestCheckStopsAtResults runs programs with the check Planner: run() records and
// validates graphs, and the first use of a result stops the program at that line.
func TestCheckStopsAtResults(t *testing.T) {
	inTempDir(t, map[string]string{
		"c.star": `b = box(name = "b", cmd = ["echo", "3"])
n = int(run(b).output.strip())
run(box(name = "never", cmd = ["true"]))
`,
		"shown.star": `r = run(box(name = "b", cmd = ["echo"]))
print(r)
`,
		"lib/use.star": `def use(r):
    return r.ok
`,
		"fn.star": `load("lib/use.star", "use")
r = run(box(name = "b", cmd = ["echo"]))
use(r)
`,
	})
	p := &builtins.Planner{}
	prog, err := ExecFile("c.star", Options{Runner: p})
	want := "c.star:2:15: check stops here: this line uses the result of the run() at c.star:2:12, which only exec knows (no stage runs under check)"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
	if len(p.Graphs) != 1 || prog.RanGraphs != 1 {
		t.Errorf("graphs %d, RanGraphs %d; want the one run() before the stop", len(p.Graphs), prog.RanGraphs)
	}

	var out []string
	if _, err := ExecFile("shown.star", Options{Runner: &builtins.Planner{}, Print: printInto(&out)}); err != nil {
		t.Fatal(FormatError(err))
	}
	if got := strings.Join(out, "|"); got != "<result of run() at shown.star:1:8: not run>" {
		t.Errorf("print(result) = %q", got)
	}

	_, err = ExecFile("fn.star", Options{Runner: &builtins.Planner{}})
	want = "lib/use.star:2:13: check stops here: this line uses the result of the run() at fn.star:2:8, which only exec knows (no stage runs under check)"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
	// A real runner's result is readable as ever.
	if _, err := ExecFile("c.star", Options{Runner: &recorder{}}); err == nil || !strings.Contains(err.Error(), "invalid literal") {
		t.Errorf("with a real runner: %v, want int() to see the recorded output", err)
	}
}

func TestPipelineIgnoredWarning(t *testing.T) {
	inTempDir(t, map[string]string{
		"both.star": `run(box(name = "a", cmd = ["true"]))
pipeline = box(name = "p", cmd = ["true"])
`,
		"only.star": `pipeline = box(name = "p", cmd = ["true"])`,
	})
	prog, err := ExecFile("both.star", Options{Runner: &recorder{}})
	if err != nil {
		t.Fatal(FormatError(err))
	}
	want := "both.star defines a global `pipeline` and also calls run(); `pipeline` runs only when the program makes no run() call, so it is ignored"
	if !prog.PipelineIgnored() || strings.Join(prog.Warnings(), "|") != want {
		t.Errorf("PipelineIgnored %v, Warnings %q\nwant %q", prog.PipelineIgnored(), prog.Warnings(), want)
	}
	prog, err = ExecFile("only.star", Options{Runner: &recorder{}})
	if err != nil {
		t.Fatal(FormatError(err))
	}
	if prog.PipelineIgnored() || len(prog.Warnings()) != 0 {
		t.Errorf("a lone pipeline warned: %q", prog.Warnings())
	}
}

// TestLibraryErrorsLeadWithUserCall checks that an error raised in the embedded library
// is headed by the user's line, with the library frames after it.
func TestLibraryErrorsLeadWithUserCall(t *testing.T) {
	inTempDir(t, map[string]string{
		"dup.star": `load("@stdlib//text.star", "upper")
pipeline = pipe(upper(name = "x"), upper(name = "x"))
`,
		"name.star": `load("@stdlib//text.star", "upper")
def mk():
    return upper(name = "X")
mk()
`,
		"user_fail.star": `fail("mine")`,
	})
	cases := map[string]string{
		"dup.star": `dup.star: global pipeline: stage name "x" is used by two boxes (declared at dup.star:2:22 and dup.star:2:41); stage names must be unique within a graph`,
		"name.star": `name.star:3:17: box: name "X" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)
Traceback (most recent call last):
  name.star:4:3: in <toplevel>
  name.star:3:17: in mk
  @stdlib//text.star:18:15: in upper`,
		// A user's own fail() keeps its "fail: " prefix.
		"user_fail.star": `user_fail.star:1:5: fail: mine`,
	}
	for file, want := range cases {
		_, err := ExecFile(file, Options{})
		if got := FormatError(err); got != want {
			t.Errorf("%s: FormatError =\n%s\nwant\n%s", file, got, want)
		}
	}
}
