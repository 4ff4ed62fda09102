package starlark

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRelativeNestedAndStdlib(t *testing.T) {
	inTempDir(t, map[string]string{
		"prog/main.star": `
load("lib/a.star", "a")
load("@stdlib//text.star", "upper")
print(a, upper("u").name)
`,
		"prog/lib/a.star": `
load("../shared/b.star", "b")
load("c.star", "c")
a = "a+" + b + "+" + c
`,
		"prog/lib/c.star":    `c = "c"`,
		"prog/shared/b.star": `b = "b"`,
	})
	var out []string
	if _, err := ExecFile("prog/main.star", Options{Print: printInto(&out)}); err != nil {
		t.Fatal(FormatError(err))
	}
	if got := strings.Join(out, "|"); got != "a+b+c u" {
		t.Errorf("output %q, want \"a+b+c u\"", got)
	}
}

func TestLoadModuleNamesArePaths(t *testing.T) {
	// Builtins resolve skill()/mount() paths from the caller's file name, so a module's
	// code must run under its path relative to the cwd.
	inTempDir(t, map[string]string{
		"d/main.star": `load("sub/lib.star", "where")
print(where())`,
		"d/sub/lib.star": `
def where():
    return fail_here()
def fail_here():
    x = {}
    return x["missing"]
`,
	})
	_, err := ExecFile("d/main.star", Options{})
	want := `d/sub/lib.star:6:13: key "missing" not in dict
Traceback (most recent call last):
  d/main.star:2:12: in <toplevel>
  d/sub/lib.star:3:21: in where
  d/sub/lib.star:6:13: in fail_here`
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}

func TestLoadExecutesOnce(t *testing.T) {
	inTempDir(t, map[string]string{
		"main.star": `
load("a.star", "a")
load("b.star", "b")
load("./lib.star", x2 = "x")
print(a, b, x2)
`,
		"a.star":   `load("lib.star", "x")` + "\na = x",
		"b.star":   `load("sub/../lib.star", "x")` + "\nb = x",
		"lib.star": `print("lib runs")` + "\nx = 1",
	})
	var out []string
	if _, err := ExecFile("main.star", Options{Print: printInto(&out)}); err != nil {
		t.Fatal(FormatError(err))
	}
	if got := strings.Join(out, "|"); got != "lib runs|1 1 1" {
		t.Errorf("output %q, want lib to run once: \"lib runs|1 1 1\"", got)
	}
}

func TestLoadCycle(t *testing.T) {
	inTempDir(t, map[string]string{
		"a.star": `load("b.star", "b")`,
		"b.star": `load("c.star", "c")` + "\nb = 1",
		"c.star": `load("a.star", "a")` + "\nc = 1",
	})
	_, err := ExecFile("a.star", Options{})
	want := `c.star:1:1: cannot load a.star: load cycle: a.star -> b.star -> c.star -> a.star
  loaded from b.star:1:1
  loaded from a.star:1:1`
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}

func TestLoadSelfCycle(t *testing.T) {
	inTempDir(t, map[string]string{"lib.star": `load("lib.star", "x")`, "m.star": `load("lib.star", "x")`})
	_, err := ExecFile("m.star", Options{})
	if got := FormatError(err); !strings.HasPrefix(got, "lib.star:1:1: cannot load lib.star: load cycle: lib.star -> lib.star\n") {
		t.Errorf("FormatError = %q", got)
	}
}

func TestLoadFailureCached(t *testing.T) {
	inTempDir(t, map[string]string{
		"main.star": `
def try_load():
    pass
load("ok.star", "first")
print(first)
`,
		"ok.star": `
load("broken.star", "y")
first = y
`,
		"other.star": `load("broken.star", "y")`,
		"broken.star": `print("broken runs")
y = 1 // 0
`,
		"twice.star": `load("a1.star", "v1")
load("a2.star", "v2")
`,
		"a1.star": `load("broken.star", "y")
v1 = 1`,
		"a2.star": `load("broken.star", "y")
v2 = 1`,
	})
	var out []string
	_, err := ExecFile("twice.star", Options{Print: printInto(&out)})
	if len(out) != 1 {
		t.Errorf("broken.star printed %d times, want once: %q", len(out), out)
	}
	want := "broken.star:2:7: floored division by zero\n  loaded from a1.star:1:1\n  loaded from twice.star:1:1"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ load, want string }{
		{`load("@foo//x.star", "x")`, `m.star:1:1: cannot load @foo//x.star: unknown repository @foo; the only repository is @stdlib`},
		{`load("@stdlib//../etc/x.star", "x")`, `m.star:1:1: cannot load @stdlib//../etc/x.star: it escapes @stdlib (paths inside @stdlib are relative and contain no ".." or leading "/")`},
		{`load("@stdlib///etc/x.star", "x")`, `m.star:1:1: cannot load @stdlib///etc/x.star: it escapes @stdlib (paths inside @stdlib are relative and contain no ".." or leading "/")`},
		{`load("@stdlib//nope.star", "x")`, `m.star:1:1: cannot load @stdlib//nope.star: no such module in the standard library`},
		{`load("@stdlib", "x")`, `m.star:1:1: cannot load @stdlib: a module name must end in .star`},
		{`load("@stdlibx.star", "x")`, `m.star:1:1: cannot load @stdlibx.star: a repository module looks like @stdlib//name.star`},
		{`load("missing.star", "x")`, `m.star:1:1: cannot load missing.star: no such file`},
		{`load("./sub/../missing.star", "x")`, `m.star:1:1: cannot load ./sub/../missing.star: missing.star: no such file`},
		{`load("dir.star", "x")`, `m.star:1:1: cannot load dir.star: it is a directory, not a .star file`},
		{`load("sub/lib.star", "x")`, `sub/lib.star:2:6: source is not valid UTF-8` + "\n  loaded from m.star:1:1"},
		{`load("sub/nul.star", "x")`, `sub/nul.star:2:3: source contains a NUL byte` + "\n  loaded from m.star:1:1"},
		{`load("@stdlib//text.star", "nope")`, `m.star:1:1: load: name nope not found in module @stdlib//text.star`},
	}
	for _, c := range cases {
		dir := inTempDir(t, map[string]string{"m.star": c.load, "sub/lib.star": "x = 1\ny = \"\xe9\"\n", "sub/nul.star": "x = 1\n# \x00\n"})
		if err := os.Mkdir(filepath.Join(dir, "dir.star"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := ExecFile("m.star", Options{})
		if got := FormatError(err); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.load, got, c.want)
		}
	}
}

func TestResolveModule(t *testing.T) {
	cases := []struct{ from, module, name string }{
		{"main.star", "lib.star", "lib.star"},
		{"a/b/main.star", "../lib.star", "a/lib.star"},
		{"a/main.star", "/abs/lib.star", "/abs/lib.star"},
		{"<stdin>", "x/lib.star", "x/lib.star"},
		{"@stdlib//agents.star", "text.star", "@stdlib//text.star"},
		{"@stdlib//sub/a.star", "../text.star", "@stdlib//text.star"},
		{"main.star", "@stdlib//text.star", "@stdlib//text.star"},
	}
	for _, c := range cases {
		ref, err := resolveModule(c.from, c.module)
		if err != nil || ref.name != c.name {
			t.Errorf("resolveModule(%q, %q) = %q, %v; want %q", c.from, c.module, ref.name, err, c.name)
		}
	}
	for _, bad := range [][2]string{
		{"@stdlib//text.star", "/etc/passwd.star"},
		{"@stdlib//text.star", "../../x.star"},
	} {
		if ref, err := resolveModule(bad[0], bad[1]); err == nil {
			t.Errorf("resolveModule(%q, %q) = %q, want an error", bad[0], bad[1], ref.name)
		}
	}
}
