package starlark

import (
	"context"
	"testing"
	"time"

	"github.com/voidbox/voidbox/builtins"
	sk "go.starlark.net/starlark"
)

// FuzzExecProgram feeds arbitrary source through the program host: it must return (a
// value or an error) without panicking or hanging. A step limit stops endless loops and
// loads resolve against an empty directory (and the embedded stdlib).
func FuzzExecProgram(f *testing.F) {
	seeds := []string{
		"x = 1",
		"pipeline = pipe(box(name = \"a\", cmd = [\"echo\"]), box(name = \"b\", cmd = [\"cat\"]))",
		"r = run(fan_out(box(name = \"a\", cmd = [\"true\"]), box(name = \"b\", cmd = [\"true\"])))\nprint(r.ok)",
		"while True:\n    pass\n",
		"def f(n):\n    return f(n + 1)\nf(0)\n",
		"load(\"@stdlib//text.star\", \"upper\")\npipeline = upper()",
		"load(\"@stdlib//agents.star\", \"researcher\")\nx = researcher(\"r\", \"p\")",
		"load(\"missing.star\", \"x\")",
		"load(\"@x//y.star\", \"y\")",
		"box(name = 1, memory_mb = \"a\")",
		"x = (1,\n",
		"print(args)\nargs[\"a\"] = 1",
		"s = set([1, 2])\nfor i in range(10):\n    s.add(i)\n",
		"x = [1] * 1000000\ny = \"a\" * 100",
		"b = box(name = \"b\", cmd = [\"echo\", \"3\"])\nn = int(run(b).output.strip())",
		"r = run(box(name = \"b\", cmd = [\"x\"]))\nprint(r, getattr(r, \"ok\", 1), json.encode(r))",
		"\xef\xbb\xbfx = \"caf\xe9\"",
		"g = box(name = \"a\", cmd = [\"x\"])\nfor i in range(70):\n    g = fan_out(g, g)",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rec := &recorder{}
		prog, err := ExecSource(dir+"/fuzz.star", []byte(src), Options{
			Runner:   rec,
			Context:  ctx,
			MaxSteps: 100000,
			Args:     map[string]string{"a": "b"},
			Print:    func(_ *sk.Thread, _ string) {},
		})
		if err != nil {
			_ = FormatError(err)
			return
		}
		if prog.RanGraphs != len(rec.graphs) {
			t.Errorf("RanGraphs = %d, runner saw %d graphs", prog.RanGraphs, len(rec.graphs))
		}
		// The same program as `voidbox check` runs it: it ends, stops at a result, or fails.
		planner := &builtins.Planner{}
		prog, err = ExecSource(dir+"/fuzz.star", []byte(src), Options{
			Runner: planner, Context: ctx, MaxSteps: 100000, Print: func(_ *sk.Thread, _ string) {},
		})
		if err != nil {
			_ = FormatError(err)
			return
		}
		if prog.RanGraphs != len(planner.Graphs) {
			t.Errorf("under check: RanGraphs = %d, planner saw %d graphs", prog.RanGraphs, len(planner.Graphs))
		}
	})
}
