package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fmt accepts the dialect exec runs (while, set, top-level control flow, reassignment,
// recursion): every program of the formatter's corpus formats, and stays formatted.
func TestFmtDialect(t *testing.T) {
	dir := t.TempDir()
	prog := writeFile(t, dir, "poll.star", "n=0\nwhile n<3:\n  n+=1\nif n: print(n)\n")
	if r := voidbox(t, "fmt", prog); r.code != exitOK || r.stderr != "" {
		t.Fatalf("fmt on a while loop: exit %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(prog); string(got) != "n = 0\nwhile n < 3:\n    n += 1\nif n:\n    print(n)\n" {
		t.Errorf("formatted = %q", got)
	}
	var copies []string
	for _, f := range mustGlob(t, "starfmt/testdata/dialect/*.star*") {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, writeFile(t, dir, strings.TrimSuffix(filepath.Base(f), ".in"), string(src)))
	}
	if r := voidbox(t, append([]string{"fmt"}, copies...)...); r.code != exitOK || r.stderr != "" {
		t.Fatalf("fmt on the dialect corpus: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := voidbox(t, append([]string{"fmt", "--check"}, copies...)...); r.code != exitOK || r.stdout != "" {
		t.Errorf("fmt --check after fmt: exit %d, listed %q", r.code, r.stdout)
	}
}

// A file fmt cannot read or parse is reported once, at the position `voidbox check`
// gives, in its words.
func TestFmtErrorsMatchCheck(t *testing.T) {
	dir := t.TempDir()
	for i, src := range []string{
		"x = = 1\n",
		"def (:\n",
		"x = 1\nwhile x\n    x -= 1\n",
		"s = 'é' + = 2\n",
		"if x:\n  y = [1,\n",
		"x = 1\ny = 'caf\xe9'\n",
		"\ufeffx = = 1\n",
		"print(1)\n# \x00\nprint(2)\n",
	} {
		f := writeFile(t, dir, "bad"+string(rune('a'+i))+".star", src)
		check := voidbox(t, "check", f)
		r := voidbox(t, "fmt", "--check", f)
		if check.code != exitUsage || !strings.HasPrefix(check.stderr, f+":") {
			t.Fatalf("check %q: exit %d, stderr %q; want an error at file:line:col", src, check.code, check.stderr)
		}
		if r.code != exitUsage || r.stdout != "" || r.stderr != "voidbox fmt: "+check.stderr || strings.Count(r.stderr, f) != 1 {
			t.Errorf("fmt %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", src, r.code, r.stdout, r.stderr, "voidbox fmt: "+check.stderr)
		}
	}
}

// go.starlark.net reads a NUL byte as the end of the file: exec would run print(1) and
// silently drop print(2). exec refuses the file instead, before running anything, as fmt
// and check do.
func TestExecRefusesNUL(t *testing.T) {
	f := writeFile(t, t.TempDir(), "nul.star", "print(1)\n# \x00\nprint(2)\n")
	r := voidbox(t, "exec", f)
	// Where KVM does not work, exec first notes the fallback to software emulation.
	if want := f + ":2:3: source contains a NUL byte\n"; r.code != exitUsage || r.stdout != "" || !strings.HasSuffix(r.stderr, "\n"+want) && r.stderr != want {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want exit 2, no output, and stderr ending in %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestFmtBadArguments(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.star", "x=1\n")
	missing := filepath.Join(dir, "missing.star")
	for _, args := range [][]string{{dir}, {missing}, {"--check", dir}} {
		path := args[len(args)-1]
		check := voidbox(t, "check", path)
		r := voidbox(t, append([]string{"fmt"}, args...)...)
		if r.code != exitUsage || r.stderr != "voidbox fmt: "+check.stderr || strings.Count(r.stderr, path) != 1 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("fmt %q: exit %d, stderr %q; want exit 2 and one line naming the path once, as check says: %q", args, r.code, r.stderr, check.stderr)
		}
	}
	// The other files are still formatted, and the exit code still says something failed.
	r := voidbox(t, "fmt", missing, good)
	if got, _ := os.ReadFile(good); r.code != exitUsage || string(got) != "x = 1\n" {
		t.Errorf("fmt missing good: exit %d, good.star = %q; want exit 2 and good.star formatted", r.code, got)
	}
}

// A leading byte order mark is not part of the program: fmt skips it when parsing (so
// columns are the ones exec gives) and keeps it in the file.
func TestFmtKeepsBOM(t *testing.T) {
	dir := t.TempDir()
	bom := writeFile(t, dir, "bom.star", "\ufeffx=1\n")
	if r := voidbox(t, "fmt", bom); r.code != exitOK {
		t.Fatalf("fmt with a BOM: exit %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(bom); string(got) != "\ufeffx = 1\n" {
		t.Errorf("formatted = %q, want the BOM kept", got)
	}
	if r := voidbox(t, "fmt", "--check", bom); r.code != exitOK {
		t.Errorf("fmt --check after fmt with a BOM: exit %d, listed %q", r.code, r.stdout)
	}
	bad := writeFile(t, dir, "latin1.star", "x = 1\ny = 'caf\xe9'\n")
	voidbox(t, "fmt", bad)
	if got, _ := os.ReadFile(bad); string(got) != "x = 1\ny = 'caf\xe9'\n" {
		t.Errorf("a file refused for its encoding changed: %q", got)
	}
}
