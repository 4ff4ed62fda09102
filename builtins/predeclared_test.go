package builtins

import (
	"sort"
	"strings"
	"testing"
)

func TestPredeclared(t *testing.T) {
	pre := Predeclared()
	var names []string
	for k := range pre {
		names = append(names, k)
	}
	sort.Strings(names)
	if got := strings.Join(names, " "); got != "box fan_out json llm math mount pipe run skill struct time" {
		t.Fatalf("Predeclared names = %s", got)
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

// TestBoxPosInLibrary checks that a box made by a library function records the
// library's call site, the place a user would look to change it.
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
	if pos := globals["b"].(*Box).stage.Pos; pos != "@stdlib//lib.star:3:15" {
		t.Errorf("Pos = %q, want @stdlib//lib.star:3:15", pos)
	}
}
