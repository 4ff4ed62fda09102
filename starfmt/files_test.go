package starfmt_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/starfmt"
	vstar "github.com/voidbox/voidbox/starlark"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFormatFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"good.star":  "x = 1\n",
		"ugly.star":  "x=1\nwhile x: x-=1\n",
		"bad.star":   "x = (\n",
		"latin.star": "x = 'caf\xe9'\n",
	})
	p := func(name string) string { return filepath.Join(dir, name) }
	var out bytes.Buffer
	changed, errs := starfmt.FormatFiles([]string{p("good.star"), p("ugly.star")}, starfmt.Options{Check: true, List: &out})
	if len(errs) != 0 || strings.Join(changed, ",") != p("ugly.star") || out.String() != p("ugly.star")+"\n" {
		t.Errorf("check: changed %q, errors %v, listed %q; want only ugly.star", changed, errs, out.String())
	}
	if b, _ := os.ReadFile(p("ugly.star")); string(b) != "x=1\nwhile x: x-=1\n" {
		t.Errorf("check mode modified ugly.star: %q", b)
	}

	// A bad file is reported and the others are still formatted.
	out.Reset()
	args := []string{p("bad.star"), p("good.star"), p("ugly.star"), dir, p("missing.star"), p("latin.star")}
	changed, errs = starfmt.FormatFiles(args, starfmt.Options{List: &out})
	if strings.Join(changed, ",") != p("ugly.star") || out.Len() != 0 {
		t.Errorf("write: changed %q, listed %q; want ugly.star, nothing listed", changed, out.String())
	}
	wantErrs := []struct{ path, msg string }{
		{p("bad.star"), ":2:1: "},
		{dir, ": it is a directory, not a .star file"},
		{p("missing.star"), ": no such file"},
		{p("latin.star"), ":1:9: source is not valid UTF-8"},
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors %v, want %d", errs, len(wantErrs))
	}
	for i, err := range errs {
		w := wantErrs[i]
		if msg := err.Error(); !strings.HasPrefix(msg, w.path+w.msg) || strings.Count(msg, w.path) != 1 {
			t.Errorf("error %d = %q, want it to start with %q and name the file once", i, msg, w.path+w.msg)
		}
	}
	if b, _ := os.ReadFile(p("ugly.star")); string(b) != "x = 1\nwhile x:\n    x -= 1\n" {
		t.Errorf("ugly.star after fmt = %q", b)
	}
	if info, _ := os.Stat(p("ugly.star")); info.Mode().Perm() != 0o640 {
		t.Errorf("ugly.star mode after fmt = %v, want 0640 kept", info.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.fmt-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if changed, errs := starfmt.FormatFiles([]string{p("ugly.star")}, starfmt.Options{Check: true}); len(changed)+len(errs) != 0 {
		t.Errorf("formatted file reported: changed %q, errors %v", changed, errs)
	}
}

// TestFormatFilesTooBig: fmt has exec's size limit and message.
func TestFormatFilesTooBig(t *testing.T) {
	dir := writeFiles(t, map[string]string{"big.star": strings.Repeat("#", vstar.MaxFileSize+1)})
	p := filepath.Join(dir, "big.star")
	_, errs := starfmt.FormatFiles([]string{p}, starfmt.Options{})
	if len(errs) != 1 || errs[0].Error() != p+": file is larger than the 4 MiB limit for .star files" {
		t.Errorf("errors = %v, want one refusing the size", errs)
	}
}
