package builtins

import (
	"sort"
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

func TestPredeclared(t *testing.T) {
	pre := Predeclared()
	var names []string
	for k := range pre {
		if _, universal := starlark.Universe[k]; !universal {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "box fan_out json llm math mount pipe run skill step struct time" {
		t.Fatalf("Predeclared DSL names = %s", got)
	}
	// Every universal builtin but set is shadowed by a wrapper of the same name.
	for k, v := range starlark.Universe {
		b, ok := v.(*starlark.Builtin)
		if !ok {
			continue
		}
		w, shadowed := pre[k].(*starlark.Builtin)
		if shadowed == (k == "set") || (shadowed && w.Name() != b.Name()) {
			t.Errorf("Predeclared[%q] = %v", k, pre[k])
		}
	}
	g := mustExec(t, "p.star", `
fns = [str(llm.claude), str(llm.ollama), str(llm.custom), type(llm)]
j = json.encode({"a": [1, 2]})
d = time.parse_duration("90s").seconds
m = math.sqrt(16)
s = struct(a = 1).a
m1 = mount("/", "/host")
boxes = [box("a", cmd = ["x"]), box("b", cmd = ["y"])]
strs = [str(m1), str(boxes[0]), str(pipe(boxes[0])), str(fan_out(boxes[0], pipe(boxes[1]))), str(m1.mode)]
`, nil)
	want := map[string]string{
		"fns":  `["<built-in function llm.claude>", "<built-in function llm.ollama>", "<built-in function llm.custom>", "module"]`,
		"j":    `"{\"a\":[1,2]}"`,
		"d":    "90.0",
		"m":    "4.0",
		"s":    "1",
		"strs": `["mount(\"/\", \"/host\", mode=\"ro\")", "box(\"a\")", "pipe(a)", "fan_out(a, pipe(b))", "ro"]`,
	}
	for k, w := range want {
		if got := g[k].String(); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	// Each call returns a fresh dict: one program cannot change another's globals.
	pre["box"] = nil
	if Predeclared()["box"] == nil {
		t.Fatal("Predeclared shares its dict between calls")
	}
}

// TestBoxPosInLibrary checks that a box made by a library function records the user's
// call of that function: errors about the box ("declared at") must point at the user's
// own line, not at the library's box() call shared by every user.
func TestBoxPosInLibrary(t *testing.T) {
	lib := mustExec(t, "@stdlib//lib.star", `
def make(name):
    return box(name, cmd = ["x"])
`, nil)
	pre := Predeclared()
	pre["make"] = lib["make"]
	globals, err := execWith(t, "main.star", "b = make(\"b\")\n", pre, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pos := globals["b"].(*Box).stage.Pos; pos != "main.star:1:9" {
		t.Errorf("Pos = %q, want main.star:1:9", pos)
	}
	// Two boxes from the same library line clash at the user's two calls.
	globals, err = execWith(t, "main.star", "g = pipe(make(\"x\"),\n  make(\"x\"))\n", pre, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ToNode(globals["g"])
	want := `stage name "x" is used by two boxes (declared at main.star:1:14 and main.star:2:7); stage names must be unique within a graph`
	if err == nil || err.Error() != want {
		t.Errorf("ToNode:\n got %v\nwant %s", err, want)
	}
	// A helper in a user's own module is user code: its line is the box's position.
	helper := mustExec(t, "lib/helpers.star", "def mk(name):\n    return box(name, cmd = [\"x\"])\n", nil)
	pre["mk"] = helper["mk"]
	globals, err = execWith(t, "main.star", "b = mk(\"b\")\n", pre, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pos := globals["b"].(*Box).stage.Pos; pos != "lib/helpers.star:2:15" {
		t.Errorf("Pos = %q, want lib/helpers.star:2:15", pos)
	}
}

// TestKeywordArgumentsNamed: every builtin a program can call names an unexpected
// keyword argument instead of saying "unexpected keyword arguments".
func TestKeywordArgumentsNamed(t *testing.T) {
	runErrCases(t, "p.star", []errCase{
		{"len", `len([], x = 1)`, `len: unexpected keyword argument "x"`},
		{"hash", `hash("a", x = 1)`, `hash: unexpected keyword argument "x"`},
		{"getattr", `getattr(struct(a = 1), "a", x = 1)`, `getattr: unexpected keyword argument "x"`},
		{"json.encode", `json.encode(1, foo = 1)`, `json.encode: unexpected keyword argument "foo"`},
		{"math.sqrt", `math.sqrt(4, foo = 1)`, `sqrt: unexpected keyword argument "foo"`},
		{"time.parse_duration", `time.parse_duration("1s", foo = 1)`, `parse_duration: unexpected keyword argument "foo"`},
		{"run", `run(box("a", cmd = ["x"]), foo = 1)`, `run: unexpected keyword argument "foo"; pass the graph as the only positional argument, run(graph)`},
		// Other errors and normal calls pass through unchanged.
		{"len ok", `x = len([1]) + int(math.sqrt(4)) + len(json.encode(1))`, ""},
		{"len error", `len(1)`, `len: value of type int has no len`},
		{"sorted keyword", `sorted([2, 1], reverse = True)`, ""},
	})
	g := mustExec(t, "p.star", `x = [str(len), math.pi, len([1, 2])]`, nil)
	if got := g["x"].String(); got != `["<built-in function len>", 3.141592653589793, 2]` {
		t.Errorf("wrapped builtins = %s", got)
	}
}

func TestStructArgumentErrors(t *testing.T) {
	runErrCases(t, "p.star", []errCase{
		{"ok", `struct(a = 1)`, ""},
		{"positional", `struct(1)`, `struct: unexpected positional argument 1; struct takes keyword arguments only, e.g. struct(name = "x")`},
		{"long positional", `struct("` + strings.Repeat("x", 100) + `")`, `struct: unexpected positional argument "` + strings.Repeat("x", 39) + `...; struct takes keyword arguments only, e.g. struct(name = "x")`},
	})
}
