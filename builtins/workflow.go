package builtins

import (
	"fmt"
	"path"
	"strings"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

// A workflow box runs several commands in one sandbox: box(name, steps = [step(...),
// ...], output_step = "..."). The steps form a DAG through depends_on and share the
// box's sandbox (its files, its resources); runtime.ValidateSteps holds the rules, so
// the DSL and the YAML specs refuse the same workflows.

// Step is the value step() returns.
type Step struct{ step runtime.Step }

var _ starlark.HasAttrs = (*Step)(nil)

func (s *Step) String() string        { return fmt.Sprintf("step(%q)", s.step.Name) }
func (s *Step) Type() string          { return "step" }
func (s *Step) Freeze()               {}
func (s *Step) Truth() starlark.Bool  { return starlark.True }
func (s *Step) Hash() (uint32, error) { return unhashable(s) }

func (s *Step) attrs() attrTable {
	st := &s.step
	return attrTable{
		"name":       func() starlark.Value { return starlark.String(st.Name) },
		"cmd":        func() starlark.Value { return stringList(st.Args) },
		"depends_on": func() starlark.Value { return stringList(st.DependsOn) },
		"stdin_from": func() starlark.Value { return noneOr(st.StdinFrom) },
		"timeout": func() starlark.Value {
			if st.Timeout == 0 {
				return starlark.None
			}
			return starlark.String(st.Timeout.String())
		},
	}
}

func (s *Step) Attr(name string) (starlark.Value, error) { return s.attrs().get(name) }
func (s *Step) AttrNames() []string                      { return s.attrs().names() }

// stepBuiltin implements step(name, cmd, depends_on=[], stdin_from=None, timeout=None).
func stepBuiltin(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name, cmd, deps, stdinFrom, timeout starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs,
		"name", &name, "cmd", &cmd, "depends_on?", &deps, "stdin_from?", &stdinFrom, "timeout?", &timeout); err != nil {
		return nil, err
	}
	s, err := makeStep(name, cmd, deps, stdinFrom, timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return s, nil
}

func makeStep(name, cmd, deps, stdinFrom, timeout starlark.Value) (*Step, error) {
	s := &Step{}
	st := &s.step
	var err error
	if st.Name, err = wantString("name", name); err != nil {
		return nil, err
	}
	if err := checkStageName(st.Name); err != nil {
		return nil, err
	}
	if st.Args, err = wantStringList("cmd", cmd); err != nil {
		return nil, err
	}
	if len(st.Args) == 0 || st.Args[0] == "" {
		return nil, fmt.Errorf("cmd must start with the program to run, e.g. [\"tr\", \"a-z\", \"A-Z\"]")
	}
	if deps != nil {
		if st.DependsOn, err = wantStringList("depends_on", deps); err != nil {
			return nil, err
		}
	}
	if st.StdinFrom, _, err = wantOptString("stdin_from", stdinFrom); err != nil {
		return nil, err
	}
	if timeout != nil && timeout != starlark.None {
		if st.Timeout, err = parseTimeout("timeout", timeout); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setWorkflow reads box()'s steps, output_step and output_file.
func (b *Box) setWorkflow(a *boxArgs) error {
	s := &b.stage
	if a.steps != nil {
		elems, err := wantList("steps", "a list of steps", a.steps)
		if err != nil {
			return err
		}
		for i, e := range elems {
			st, ok := e.(*Step)
			if !ok {
				return typeErr(fmt.Sprintf("steps[%d]", i), "a step (from step())", e)
			}
			s.Steps = append(s.Steps, st.step)
		}
		if len(s.Steps) == 0 {
			return fmt.Errorf("steps must not be empty; give at least one step(...)")
		}
	}
	var err error
	if s.OutputStep, _, err = wantOptString("output_step", a.outputStep); err != nil {
		return err
	}
	if s.OutputStep != "" && len(s.Steps) == 0 {
		return fmt.Errorf("output_step names a step of steps=; this box has no steps")
	}
	if len(s.Steps) > 0 {
		if err := runtime.ValidateSteps(s.Steps, s.OutputStep); err != nil {
			return err
		}
	}
	if s.OutputFile, _, err = wantOptString("output_file", a.outputFile); err != nil {
		return err
	}
	if f := s.OutputFile; f != "" && (path.Clean(f) != f || !strings.HasPrefix(f, runtime.WorkDir+"/")) {
		return fmt.Errorf("output_file %q must be a clean absolute path under %s/, e.g. \"%s/report.md\"", f, runtime.WorkDir, runtime.WorkDir)
	}
	return nil
}

// checkWorkflowKind adds the workflow rules to checkKind: a box is one of a command,
// an agent or a workflow, and output_file belongs to an agent.
func (b *Box) checkWorkflowKind() error {
	s := &b.stage
	switch {
	case len(s.Steps) > 0 && (s.Cmd != nil || s.Prompt != ""):
		return fmt.Errorf("give one of cmd (a command box), prompt (an agent box) or steps (a workflow box), not several")
	case len(s.Steps) > 0 && b.llm != nil:
		return fmt.Errorf("llm is for an agent box (prompt=); a workflow box runs no model: remove llm")
	case s.OutputFile != "" && s.Prompt == "":
		return fmt.Errorf("output_file is for an agent box (prompt=): the file the agent writes its result to")
	}
	return nil
}

// stepValues are a workflow box's steps as step values (for b.steps).
func stepValues(steps []runtime.Step) starlark.Value {
	vs := make([]starlark.Value, len(steps))
	for i, st := range steps {
		c := st
		c.Args, c.DependsOn = cloneStrings(st.Args), cloneStrings(st.DependsOn)
		vs[i] = &Step{step: c}
	}
	return starlark.NewList(vs)
}
