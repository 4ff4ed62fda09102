package starlark

import (
	"errors"
	"testing"
)

func TestFormatError(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"syntax", "x = (1,\ny = 2\n", "p.star:2:4: syntax error: got '=', want ')'"},
		{"resolve", "x = boxx(1)\ny = z\n", "p.star:1:5: undefined: boxx\np.star:2:5: undefined: z"},
		{"builtin argument", "\n\nb = box(\n    name = \"a\",\n    cmd = [\"true\"],\n    memory_mb = \"512\",\n)\n",
			"p.star:3:8: box: memory_mb must be an int, got string"},
		{"toplevel", "x = 1 + \"a\"\n", "p.star:1:7: unknown binary op: int + string"},
		{"fail in function", "def f(n):\n    if n == 0:\n        fail(\"bottom\")\n    f(n - 1)\n\nf(1)\n",
			"p.star:3:13: fail: bottom\nTraceback (most recent call last):\n  p.star:6:2: in <toplevel>\n  p.star:4:6: in f\n  p.star:3:13: in f"},
		{"builtin in function", "def mk():\n    return box(name = 1)\nmk()\n",
			"p.star:2:15: box: name must be a string, got int\nTraceback (most recent call last):\n  p.star:3:3: in <toplevel>\n  p.star:2:15: in mk"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ExecSource("p.star", []byte(c.src), Options{})
			if got := FormatError(err); got != c.want {
				t.Errorf("FormatError =\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

func TestFormatErrorPlain(t *testing.T) {
	if got := FormatError(nil); got != "" {
		t.Errorf("FormatError(nil) = %q", got)
	}
	if got := FormatError(errors.New("boom")); got != "boom" {
		t.Errorf("FormatError(boom) = %q", got)
	}
}

func TestFormatErrorSyntaxInLoadedModule(t *testing.T) {
	inTempDir(t, map[string]string{
		"m.star":     `load("lib/l.star", "x")`,
		"lib/l.star": "x = [\n",
	})
	_, err := ExecFile("m.star", Options{})
	want := "lib/l.star:2:1: syntax error: got end of file, want primary expression\n  loaded from m.star:1:1"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}
