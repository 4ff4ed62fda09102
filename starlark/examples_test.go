package starlark

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/builtins"
	"github.com/voidbox/voidbox/runtime"
)

// shape renders a graph compactly: stage names, pipe(...) and fan_out(...).
func shape(n runtime.Node) string {
	var parts []string
	switch n := n.(type) {
	case *runtime.Stage:
		return n.Name
	case *runtime.Pipe:
		for _, c := range n.Nodes {
			parts = append(parts, shape(c))
		}
		return "pipe(" + strings.Join(parts, ", ") + ")"
	case *runtime.FanOut:
		for _, c := range n.Nodes {
			parts = append(parts, shape(c))
		}
		return "fan_out(" + strings.Join(parts, ", ") + ")"
	}
	return "?"
}

// TestExamples executes every example with a recording runner and checks the graphs it
// builds; the CLI tests run them for real.
func TestExamples(t *testing.T) {
	cases := map[string][]string{
		"hello.star":    {"hello"},
		"pipeline.star": {"pipe(source, shout, count)"},
		"fan_out.star":  {"pipe(words, fan_out(sorted, first, lines))"},
		"failure.star":  {"fan_out(flaky, steady)", "fallback"},
		"text.star":     {"pipe(source, sort_lines, upper, fan_out(lines_count, sha256))"},
		"python.star":   {"pipe(python)"},
		"agent.star":    {"pipe(source, analyse, words)"},
	}
	files, err := filepath.Glob("../examples/*.star")
	if err != nil || len(files) != len(cases) {
		t.Fatalf("examples: %v, %v; want the %d listed here (add new examples to this test)", files, err, len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			var printed []string
			prog, err := ExecFile(filepath.Join("../examples", name), Options{Runner: &failingFlaky{rec}, Print: printInto(&printed)})
			if err != nil {
				t.Fatal(FormatError(err))
			}
			var got []string
			for _, g := range rec.graphs {
				got = append(got, shape(g))
			}
			if prog.Pipeline != nil {
				got = append(got, shape(prog.Pipeline))
			}
			if strings.Join(got, "; ") != strings.Join(want, "; ") {
				t.Errorf("graphs = %q, want %q", got, want)
			}
			for _, g := range append(rec.graphs, prog.Pipeline) {
				if g != nil {
					if err := runtime.Validate(g); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
}

// failingFlaky reports stage "flaky" as failed after 2 attempts so failure.star's
// branch on the result is exercised.
type failingFlaky struct{ *recorder }

func (f *failingFlaky) Run(ctx context.Context, root runtime.Node) (*runtime.Result, error) {
	res, err := f.recorder.Run(ctx, root)
	if s, ok := res.Stages["flaky"]; ok {
		code := 3
		s.Status, s.Attempts, s.ExitCode, s.Output = runtime.StatusFailed, 2, &code, ""
	}
	return res, err
}

func TestStdlibModules(t *testing.T) {
	inTempDir(t, map[string]string{
		"m.star": `
load("@stdlib//agents.star", "researcher")
load("@stdlib//text.star", "head", "lower")
r = researcher("review", "List the risks", llm = llm.ollama("qwen3-coder"), timeout = "2m")
pipeline = pipe(head(3), lower(), r)
`,
		"bad.star": `
load("@stdlib//text.star", "head")
head(-1)
`,
	})
	prog, err := ExecFile("m.star", Options{})
	if err != nil {
		t.Fatal(FormatError(err))
	}
	if got := shape(prog.Pipeline); got != "pipe(head, lower, review)" {
		t.Fatalf("pipeline = %s", got)
	}
	stages := prog.Pipeline.Stages()
	if got := strings.Join(stages[0].Cmd, " "); got != "head -n 3" {
		t.Errorf("head cmd = %q", got)
	}
	review := stages[2]
	if len(review.Skills) != 2 || review.Skills[0].Kind != runtime.SkillFile || review.Skills[1].Kind != runtime.SkillAgent {
		t.Fatalf("review skills = %+v, want the review file then the agent", review.Skills)
	}
	if !strings.Contains(review.Skills[0].Content, "most severe first") {
		t.Errorf("review skill content = %q, want the embedded skills/review.md", review.Skills[0].Content)
	}
	if review.LLM == nil || review.LLM.Model != "qwen3-coder" || review.Prompt != "List the risks" {
		t.Errorf("review = %+v", review)
	}

	_, err = ExecFile("bad.star", Options{})
	// The user's call heads the message; the library's frame follows in the traceback.
	want := "bad.star:3:5: head: n must be a non-negative int, got -1\nTraceback (most recent call last):\n  bad.star:3:5: in <toplevel>\n  @stdlib//text.star:40:13: in head"
	if got := FormatError(err); got != want {
		t.Errorf("FormatError =\n%s\nwant\n%s", got, want)
	}
}

// TestExamplesUnderCheck runs every example the way `voidbox check` does: each either
// ends or stops where it uses a run() result, and none runs code on invented results
// (failure.star used to print "flaky succeeded" for a stage that never ran).
func TestExamplesUnderCheck(t *testing.T) {
	stops := map[string]string{
		"failure.star": "../examples/failure.star:16:22: check stops here: this line uses the result of the run() at ../examples/failure.star:14:13, which only exec knows (no stage runs under check)",
	}
	files, err := filepath.Glob("../examples/*.star")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var printed []string
			p := &builtins.Planner{}
			_, err := ExecFile(f, Options{Runner: p, Print: printInto(&printed)})
			if _, stopped := builtins.AsNotRun(err); err != nil && !stopped {
				t.Fatalf("check fails a valid example: %s", FormatError(err))
			}
			if want, ok := stops[filepath.Base(f)]; ok && FormatError(err) != want {
				t.Errorf("FormatError =\n%s\nwant\n%s", FormatError(err), want)
			}
			for _, line := range printed {
				if strings.Contains(line, "succeeded") || strings.Contains(line, "run ok") {
					t.Errorf("printed %q from a result that does not exist", line)
				}
			}
		})
	}
}
