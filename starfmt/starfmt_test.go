package starfmt_test

import (
	"strings"
	"testing"

	"github.com/voidbox/voidbox/starfmt"
	vstar "github.com/voidbox/voidbox/starlark"
)

func TestFormat(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"buildifier style",
			"load('@stdlib//text.star','upper')\nb=box(name='b',cmd=['tr','a-z','A-Z'],memory_mb=256)\nx=[3,1,2]\n",
			"load(\"@stdlib//text.star\", \"upper\")\n\nb = box(name = \"b\", cmd = [\"tr\", \"a-z\", \"A-Z\"], memory_mb = 256)\nx = [3, 1, 2]\n"},
		{"while",
			"n=0\nwhile(n<3):\n  n+=1\n",
			"n = 0\nwhile (n < 3):\n    n += 1\n"},
		{"while with a one-line body, nested, break and continue",
			"def f(k):\n  while k: k -= 1\n  while True:\n    while k < 9:\n      k += 1\n      if k == 5: continue\n    break\n  return k\n",
			"def f(k):\n    while k:\n        k -= 1\n    while True:\n        while k < 9:\n            k += 1\n            if k == 5:\n                continue\n        break\n    return k\n"},
		// Continuation lines line up under the bracket of the real `while` header.
		{"while condition over two lines",
			"while n > 0 and (n % 7 != 0 or\n  n % 11 == 0): n -= 1\n",
			"while n > 0 and (n % 7 != 0 or\n                 n % 11 == 0):\n    n -= 1\n"},
		{"while condition with a multi-line call",
			"def f():\n    while ready(\n  a,\n   b): wait()\n",
			"def f():\n    while ready(\n        a,\n        b,\n    ):\n        wait()\n"},
		{"a while in a string or comment is left alone",
			"s = 'while x:'  # while y:\n",
			"s = \"while x:\"  # while y:\n"},
		// A file that spells the sentinel gets another one.
		{"sentinel taken",
			"_voidbox_fmt_ = 1\nwhile _voidbox_fmt_:\n  _voidbox_fmt_ -= 1\n",
			"_voidbox_fmt_ = 1\nwhile _voidbox_fmt_:\n    _voidbox_fmt_ -= 1\n"},
		{"single quotes with non-ASCII escapes",
			"s = '\\u00e9\\x41 é \\'q\\''\n",
			"s = \"\\u00e9\\x41 é 'q'\"\n"},
		{"bytes literals",
			"b = b'\\xff' + b\"\\x00\"\n",
			"b = b'\\xff' + b\"\\x00\"\n"},
		{"tab indentation",
			"if x:\n\ty = '''a\n\tb'''\n",
			"if x:\n    y = \"\"\"a\n\tb\"\"\"\n"},
		// buildifier's grammar lacks these; fmt adds parentheses or a space.
		{"conditional after a comma in a bare tuple",
			"def f():\n    return a, b if c else d\n",
			"def f():\n    return a, (b if c else d)\n"},
		{"number right before a keyword",
			"x = [1if y else 2for y in z]\n",
			"x = [1 if y else 2 for y in z]\n"},
		{"CRLF", "x=1\r\ny=2\r\n", "x = 1\ny = 2\n"},
		{"BOM kept", "\ufeffx=1\n", "\ufeffx = 1\n"},
		// buildifier's default rewrites change programs; fmt changes only layout.
		{"loads keep their order",
			"load(\"b.star\", \"z\", \"y\")\nload(\"a.star\", \"x\")\n",
			"load(\"b.star\", \"z\", \"y\")\nload(\"a.star\", \"x\")\n"},
		{"keep-sorted lists keep their order",
			"x = [  # keep sorted\n    \"b\",\n    \"a\",\n]\n",
			"x = [\n    # keep sorted\n    \"b\",\n    \"a\",\n]\n"},
		{"call arguments keep their order",
			"f(a = 1, *args)\n",
			"f(a = 1, *args)\n"},
		{"docstrings keep their value",
			"def f():\n  \"\"\"Doc.\n\n      indented\n  \"\"\"\n",
			"def f():\n    \"\"\"Doc.\n\n      indented\n  \"\"\"\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := formatStable(t, "p.star", []byte(c.src))
			if string(got) != c.want {
				t.Errorf("Format(%q) =\n%s\nwant\n%s", c.src, got, c.want)
			}
		})
	}
}

// fmt reports a program that does not parse, or is not UTF-8, exactly as `voidbox exec`
// and `voidbox check` do: the same error, at the same file:line:col.
func TestErrorsAsExec(t *testing.T) {
	for _, src := range []string{
		"x = = 1\n",
		"def (:\n",
		"while x\n    pass\n",
		"x = 'unterminated\n",
		"if x:\npass\n",
		"x = [1,\n",
		"\ufeffx = = 1\n",
		"s = 'é' + = 2\n",
		"x = 1\r\ny = )\r\n",
		"x = 1\ny = 'a\xffb'\n",
		"\ufeffé\xc3(\n",
		"x = 1\r\n# \x80\r\n",
		"x = 1\r# \x80\r\n",
	} {
		_, fmtErr := starfmt.Format("bad.star", []byte(src))
		_, execErr := vstar.ExecSource("bad.star", []byte(src), vstar.Options{})
		if fmtErr == nil || execErr == nil {
			t.Errorf("%q: fmt error %v, exec error %v; want both", src, fmtErr, execErr)
			continue
		}
		got, want := vstar.FormatError(fmtErr), vstar.FormatError(execErr)
		if got != want || !strings.HasPrefix(got, "bad.star:") || strings.Count(got, "bad.star") != 1 {
			t.Errorf("%q: fmt says %q, exec says %q; want the same, naming bad.star once", src, got, want)
		}
	}
}

func TestRefusesNonText(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"x = 1\ny = 'a\xffb'\n", "bad.star:2:7: source is not valid UTF-8"},
		{"\ufeffé\xc3(\n", "bad.star:1:2: source is not valid UTF-8"},
		{"x = 1\r\n# \x80\r\n", "bad.star:2:3: source is not valid UTF-8"},
		// go.starlark.net would stop reading at the NUL and ignore the rest.
		{"x = 1\n# \x00\nprint(2)\n", "bad.star:2:3: source contains a NUL byte"},
		{"s = 'é\x00'\n", "bad.star:1:7: source contains a NUL byte"},
	} {
		_, err := starfmt.Format("bad.star", []byte(c.src))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Format(%q) error = %v, want %q...", c.src, err, c.want)
		}
	}
}
