package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// A workflow stage (Stage.Steps set) runs several commands in ONE sandbox: the steps
// form a DAG through DependsOn, a step starts once every step it depends on succeeded,
// and independent steps run at the same time as concurrent Sandbox.Exec calls. The
// steps share the sandbox's files (/workspace, /tmp), which is what a workflow is for.
//
// When a step fails, the steps still running are cancelled and the steps not started
// are skipped: the stage has failed, and finishing work whose result nobody uses would
// only delay the report (the same choice a "stop" failure makes for a run's stages).

// Step is one command of a workflow stage.
type Step struct {
	Name      string
	Args      []string // the program and its arguments
	DependsOn []string // steps that must succeed first
	StdinFrom string   // a (direct or transitive) dependency whose stdout is this step's stdin; "" = empty stdin
	Timeout   time.Duration
}

// StepResult is how one step of a workflow stage ended.
type StepResult struct {
	Name   string      `json:"name"`
	Status StageStatus `json:"status"`
	// ExitCode and Signal follow StageResult's rules: nil / "" when there is none.
	ExitCode   *int   `json:"exit_code"`
	Signal     string `json:"signal,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}

// StepError is a workflow whose steps do not form a valid DAG. Step is the index of
// the step at fault (-1 for output_step), Field the setting that is wrong ("name",
// "args", "depends_on", "stdin_from", "output_step") and Index the element of
// depends_on at fault (-1 otherwise), so callers can point at their own source.
type StepError struct {
	Step  int
	Field string
	Index int
	Msg   string
}

func (e *StepError) Error() string { return e.Msg }

// ValidateSteps checks a workflow's steps: at least one; names non-empty and unique;
// a program to run; depends_on naming other steps, without repeats or cycles;
// stdin_from naming a step this one depends on, directly or transitively; outputStep
// ("" = the last step) naming a step.
func ValidateSteps(steps []Step, outputStep string) error {
	if len(steps) == 0 {
		return &StepError{Step: -1, Field: "steps", Index: -1, Msg: "a workflow needs at least one step"}
	}
	index := map[string]int{}
	for i, st := range steps {
		switch {
		case st.Name == "":
			return &StepError{Step: i, Field: "name", Index: -1, Msg: fmt.Sprintf("step %d has no name", i+1)}
		case len(st.Args) == 0 || st.Args[0] == "":
			return &StepError{Step: i, Field: "args", Index: -1, Msg: fmt.Sprintf("step %q has no program to run", st.Name)}
		case st.Timeout < 0:
			return &StepError{Step: i, Field: "timeout", Index: -1, Msg: fmt.Sprintf("step %q: timeout must be greater than zero, got %s", st.Name, st.Timeout)}
		}
		if j, dup := index[st.Name]; dup {
			return &StepError{Step: i, Field: "name", Index: -1, Msg: fmt.Sprintf("step name %q is used by steps %d and %d; step names must be unique", st.Name, j+1, i+1)}
		}
		index[st.Name] = i
	}
	for i, st := range steps {
		seen := map[string]bool{}
		for k, d := range st.DependsOn {
			switch _, ok := index[d]; {
			case !ok:
				return &StepError{Step: i, Field: "depends_on", Index: k, Msg: fmt.Sprintf("step %q depends on %q, which is not a step (steps: %s)", st.Name, d, stepNames(steps))}
			case d == st.Name:
				return &StepError{Step: i, Field: "depends_on", Index: k, Msg: fmt.Sprintf("step %q depends on itself", st.Name)}
			case seen[d]:
				return &StepError{Step: i, Field: "depends_on", Index: k, Msg: fmt.Sprintf("step %q lists %q twice in depends_on", st.Name, d)}
			}
			seen[d] = true
		}
	}
	if err := findCycle(steps, index); err != nil {
		return err
	}
	for i, st := range steps {
		if st.StdinFrom == "" {
			continue
		}
		if _, ok := index[st.StdinFrom]; !ok {
			return &StepError{Step: i, Field: "stdin_from", Index: -1, Msg: fmt.Sprintf("step %q reads stdin from %q, which is not a step (steps: %s)", st.Name, st.StdinFrom, stepNames(steps))}
		}
		if !dependsOn(steps, index, i, st.StdinFrom) {
			return &StepError{Step: i, Field: "stdin_from", Index: -1, Msg: fmt.Sprintf("step %q reads stdin from %q, which it does not depend on; add %q to its depends_on", st.Name, st.StdinFrom, st.StdinFrom)}
		}
	}
	if outputStep != "" {
		if _, ok := index[outputStep]; !ok {
			return &StepError{Step: -1, Field: "output_step", Index: -1, Msg: fmt.Sprintf("output_step %q is not a step (steps: %s)", outputStep, stepNames(steps))}
		}
	}
	return nil
}

func stepNames(steps []Step) string {
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.Name
	}
	return strings.Join(names, ", ")
}

// findCycle reports the first cycle in declaration order, at the step and depends_on
// entry that closes it: "steps form a cycle: a -> b -> a".
func findCycle(steps []Step, index map[string]int) error {
	const (
		unvisited = iota
		active
		done
	)
	state := make([]int, len(steps))
	var path []int
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = active
		path = append(path, i)
		for k, d := range steps[i].DependsOn {
			j := index[d]
			switch state[j] {
			case active:
				// path holds j ... i, each depending on the next, and i depends on j.
				var chain []string
				for _, p := range path[indexOf(path, j):] {
					chain = append(chain, steps[p].Name)
				}
				chain = append(chain, steps[j].Name)
				return &StepError{Step: i, Field: "depends_on", Index: k, Msg: "steps form a cycle through depends_on: " + strings.Join(chain, " -> ")}
			case unvisited:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		return nil
	}
	for i := range steps {
		if state[i] == unvisited {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// dependsOn reports whether step i depends on the step named target, directly or
// through other steps. The graph is acyclic (checked before).
func dependsOn(steps []Step, index map[string]int, i int, target string) bool {
	seen := map[int]bool{}
	stack := []int{i}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range steps[n].DependsOn {
			if d == target {
				return true
			}
			if j := index[d]; !seen[j] {
				seen[j] = true
				stack = append(stack, j)
			}
		}
	}
	return false
}

// outputStepIndex is the step whose stdout is the stage's output.
func outputStepIndex(s *Stage) int {
	for i, st := range s.Steps {
		if st.Name == s.OutputStep {
			return i
		}
	}
	return len(s.Steps) - 1
}

// stepRun is one step's outcome inside runSteps.
type stepRun struct {
	res            StepResult
	stdout, stderr *capWriter
	err            error // the step failed (nil for skipped, cancelled and ok)
	permanent      bool
}

// runSteps runs a workflow stage's steps in sb and fills o: stdout is the output
// step's, stderr every step's in declaration order, and the error the first failed
// step's, named.
func (r *run) runSteps(parent context.Context, sb Sandbox, s *Stage, stdout, stderr *capWriter) (o outcome) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	index := make(map[string]int, len(s.Steps))
	for i, st := range s.Steps {
		index[st.Name] = i
	}
	runs := make([]*stepRun, len(s.Steps))
	done := make([]chan struct{}, len(s.Steps))
	for i := range done {
		done[i] = make(chan struct{})
	}
	var mu sync.Mutex
	first := -1 // the step that failed first
	var wg sync.WaitGroup
	for i := range s.Steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			st := s.Steps[i]
			sr := &stepRun{res: StepResult{Name: st.Name}}
			runs[i] = sr
			for _, d := range st.DependsOn {
				<-done[index[d]]
				if runs[index[d]].res.Status != StatusOK {
					sr.res.Status, sr.res.Error = StatusSkipped, fmt.Sprintf("step %s, which it depends on, did not succeed", d)
					return
				}
			}
			if ctx.Err() != nil {
				sr.res.Status, sr.res.Error = StatusSkipped, "the stage stopped before this step started"
				return
			}
			var stdin string
			if st.StdinFrom != "" {
				stdin = runs[index[st.StdinFrom]].stdout.String()
			}
			r.runStep(ctx, sb, s, st, stdin, sr)
			if sr.err != nil {
				mu.Lock()
				if first < 0 {
					first = i
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	var errs strings.Builder
	for _, sr := range runs {
		o.steps = append(o.steps, sr.res)
		if sr.stderr != nil {
			errs.WriteString(sr.stderr.String())
		}
		if sr.stdout != nil && (sr.stdout.overflow() || sr.stderr.overflow()) {
			stdout.over = true // reported by classify as the stage's overflow
		}
	}
	stderr.WriteString(errs.String())
	at := outputStepIndex(s)
	if first >= 0 {
		at = first
		sr := runs[first]
		o.err, o.permanent = fmt.Errorf("step %s: %w", sr.res.Name, sr.err), sr.permanent
	} else if !allOK(runs) {
		// Steps were stopped without one failing: the stage's deadline, or the run.
		o.err = errTimedOut
		if err := parent.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			o.err = err
		}
	} else {
		stdout.WriteString(runs[at].stdout.String())
	}
	o.exitCode, o.signal = runs[at].res.ExitCode, runs[at].res.Signal
	o.stdout, o.stderr = stdout.String(), stderr.String()
	return o
}

func allOK(runs []*stepRun) bool {
	for _, sr := range runs {
		if sr.res.Status != StatusOK {
			return false
		}
	}
	return true
}

// runStep runs one step in sb and records its result in sr.
func (r *run) runStep(stage context.Context, sb Sandbox, s *Stage, st Step, stdin string, sr *stepRun) {
	start := time.Now()
	ctx := stage
	defer func() { sr.res.DurationMS = time.Since(start).Milliseconds() }()
	if st.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, st.Timeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx) // cancelled on output overflow
	defer cancel()
	sr.stdout = &capWriter{limit: r.limit, onOverflow: cancel}
	sr.stderr = &capWriter{limit: r.limit, onOverflow: cancel}
	req := ExecRequest{Args: st.Args, Env: s.Env, Dir: WorkDir, Stdin: strings.NewReader(stdin), Stdout: sr.stdout, Stderr: sr.stderr}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = max(time.Until(dl), time.Millisecond)
	}
	var res ExecResult
	err := Timed(ctx, PhaseExec, "step "+st.Name, func() (err error) {
		res, err = sb.Exec(ctx, req)
		return err
	})
	sr.res.ExitCode, sr.res.Signal = processEnd(res.ExitCode, res.Signal, err)
	switch {
	case sr.stdout.overflow() || sr.stderr.overflow():
		sr.err = fmt.Errorf("output exceeds %s (stdout and stderr are each capped)", sizeString(r.limit))
	case stage.Err() == nil && st.Timeout > 0 && (res.TimedOut || errors.Is(ctx.Err(), context.DeadlineExceeded)):
		sr.err = fmt.Errorf("timed out after %s", st.Timeout)
	case stage.Err() != nil || res.TimedOut:
		// Another step failed, the stage's timeout expired or the run stopped: how the
		// stage ends is decided by runSteps, not by this step.
		sr.res.Status, sr.res.Error = StatusCanceled, "the stage stopped while this step ran"
		return
	case err != nil:
		sr.err = fmt.Errorf("exec %s: %w", st.Args[0], err)
		sr.permanent = errors.Is(err, ErrCommandNotFound)
	case res.ExitCode != 0 || res.Signal != "":
		sr.err = exitError(res.ExitCode, res.Signal, sr.stderr.String())
	}
	if sr.err != nil {
		sr.res.Status, sr.res.Error = StatusFailed, sr.err.Error()
		return
	}
	sr.res.Status = StatusOK
}
