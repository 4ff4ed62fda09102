package starlark

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	src := "load('@stdlib//text.star','upper')\nb=box(name='b',cmd=['tr','a-z','A-Z'],memory_mb=256)\nx=[3,1,2]\n"
	want := `load("@stdlib//text.star", "upper")

b = box(name = "b", cmd = ["tr", "a-z", "A-Z"], memory_mb = 256)
x = [3, 1, 2]
`
	got, err := Format([]byte(src), "p.star")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("Format =\n%s\nwant\n%s", got, want)
	}
	again, err := Format(got, "p.star")
	if err != nil || !bytes.Equal(again, got) {
		t.Errorf("Format is not idempotent: %q, %v", again, err)
	}
	if _, err := Format([]byte("x = (\n"), "bad.star"); err == nil || !strings.HasPrefix(err.Error(), "format bad.star: bad.star:") {
		t.Errorf("parse error = %v, want one naming bad.star", err)
	}
}

func TestFormatFiles(t *testing.T) {
	inTempDir(t, map[string]string{
		"good.star": "x = 1\n",
		"ugly.star": "x=1\n",
		"bad.star":  "x = (\n",
	})
	var out bytes.Buffer
	changed, err := FormatFiles([]string{"good.star", "ugly.star"}, true, &out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changed, ",") != "ugly.star" || out.String() != "ugly.star\n" {
		t.Errorf("check: changed %q, printed %q; want [ugly.star] and \"ugly.star\\n\"", changed, out.String())
	}
	if b, _ := os.ReadFile("ugly.star"); string(b) != "x=1\n" {
		t.Errorf("check mode modified ugly.star: %q", b)
	}

	out.Reset()
	changed, err = FormatFiles([]string{"good.star", "ugly.star"}, false, &out)
	if err != nil || strings.Join(changed, ",") != "ugly.star" || out.Len() != 0 {
		t.Errorf("write: changed %q, err %v, printed %q", changed, err, out.String())
	}
	if b, _ := os.ReadFile("ugly.star"); string(b) != "x = 1\n" {
		t.Errorf("ugly.star after fmt = %q, want \"x = 1\\n\"", b)
	}
	if info, _ := os.Stat("ugly.star"); info.Mode().Perm() != 0o644 {
		t.Errorf("ugly.star mode after fmt = %v, want 0644 kept", info.Mode().Perm())
	}
	if left, _ := filepath.Glob(".ugly.star.fmt-*"); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if changed, _ := FormatFiles([]string{"ugly.star"}, true, &out); len(changed) != 0 {
		t.Errorf("formatted file reported as changed: %q", changed)
	}

	if _, err := FormatFiles([]string{"bad.star"}, true, &out); err == nil || !strings.Contains(err.Error(), "bad.star") {
		t.Errorf("bad.star: err = %v, want a parse error naming the file", err)
	}
	if _, err := FormatFiles([]string{"missing.star"}, false, &out); err == nil || !strings.Contains(err.Error(), "missing.star") {
		t.Errorf("missing.star: err = %v", err)
	}
}

// TestShippedFilesFormatted keeps examples and stdlib in `voidbox fmt` layout.
func TestShippedFilesFormatted(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../examples/*.star", "../stdlib/*.star"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	var out bytes.Buffer
	changed, err := FormatFiles(files, true, &out)
	if err != nil || len(changed) != 0 {
		t.Errorf("not formatted (run voidbox fmt): %q, %v", changed, err)
	}
}
