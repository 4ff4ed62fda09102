package builtins

import (
	"context"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// exec runs src as the file filename with Predeclared, the way the starlark/ host
// does (but without load()), after letting setup configure the thread.
func exec(t *testing.T, filename, src string, setup func(*starlark.Thread)) (starlark.StringDict, error) {
	t.Helper()
	return execWith(t, filename, src, Predeclared(), setup)
}

// execWith is exec with the given predeclared names (Predeclared plus a library's
// globals, standing in for load()).
func execWith(t *testing.T, filename, src string, pre starlark.StringDict, setup func(*starlark.Thread)) (starlark.StringDict, error) {
	t.Helper()
	thread := &starlark.Thread{Name: t.Name()}
	if setup != nil {
		setup(thread)
	}
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true}
	return starlark.ExecFileOptions(opts, thread, filename, src, pre)
}

// mustExec is exec for snippets that must succeed.
func mustExec(t *testing.T, filename, src string, setup func(*starlark.Thread)) starlark.StringDict {
	t.Helper()
	g, err := exec(t, filename, src, setup)
	if err != nil {
		t.Fatalf("exec %s: %v\n%s", filename, err, src)
	}
	return g
}

// errCase is one row of an argument-validation table: a snippet and the exact
// message of the error it must raise ("" means it must succeed).
type errCase struct {
	name, src, want string
}

func runErrCases(t *testing.T, filename string, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := exec(t, filename, c.src, nil)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want == "":
			case err == nil:
				t.Fatalf("no error; want %q", c.want)
			case err.Error() != c.want:
				t.Fatalf("error\n got: %s\nwant: %s", err.Error(), c.want)
			}
		})
	}
}

// fakeRunner records the graph and returns a canned result or error.
type fakeRunner struct {
	got    runtime.Node
	ctx    context.Context
	result *runtime.Result
	err    error
}

func (f *fakeRunner) Run(ctx context.Context, root runtime.Node) (*runtime.Result, error) {
	f.got, f.ctx = root, ctx
	return f.result, f.err
}

// describe renders a runtime graph compactly for assertions: pipe(a, fan_out(b, c)).
func describe(n runtime.Node) string {
	switch n := n.(type) {
	case *runtime.Stage:
		return n.Name
	case *runtime.Pipe:
		return "pipe(" + describeAll(n.Nodes) + ")"
	case *runtime.FanOut:
		return "fan_out(" + describeAll(n.Nodes) + ")"
	}
	return "?"
}

func describeAll(ns []runtime.Node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = describe(n)
	}
	return strings.Join(parts, ", ")
}
