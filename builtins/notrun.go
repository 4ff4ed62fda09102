package builtins

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// What run() returns under `voidbox check`. No stage runs there, so no field of a
// result is known: rather than hand the program invented values (an empty output that
// int() then rejects, a "succeeded" branch that never happened), every read of a field
// stops the program with a *NotRunError, which check reports as the point where it
// stops, not as an error in the program.

// Planning is implemented by a Runner that records graphs instead of running them (the
// Planner), and by wrappers that forward to one. When Planning() is true, run() still
// validates the graph and hands it to the Runner, then returns a result whose fields
// only exec knows.
type Planning interface{ Planning() bool }

// NotRunError is the error a program under check raises when it uses the result of a
// run() call. It is not a mistake in the program: exec would have a value there.
type NotRunError struct {
	// RunPos is where run() was called, "c.star:2:5".
	RunPos string
}

const notRunFormat = "check stops here: this line uses the result of the run() at %s, which only exec knows (no stage runs under check)"

// notRunRE matches notRunFormat inside a longer message.
var notRunRE = regexp.MustCompile(regexp.QuoteMeta(notRunFormat[:strings.Index(notRunFormat, "%s")]) +
	`(.+?)` + regexp.QuoteMeta(notRunFormat[strings.Index(notRunFormat, "%s")+2:]))

func (e *NotRunError) Error() string { return fmt.Sprintf(notRunFormat, e.RunPos) }

// AsNotRun finds the NotRunError that stopped a program under check. Some builtins that
// meet a result (json.encode, for one) wrap the error with %v, which cuts the chain
// errors.As follows; for those the message, which carries the run() position, is read.
func AsNotRun(err error) (*NotRunError, bool) {
	if err == nil {
		return nil, false
	}
	var nr *NotRunError
	if errors.As(err, &nr) {
		return nr, true
	}
	if m := notRunRE.FindStringSubmatch(err.Error()); m != nil {
		return &NotRunError{RunPos: m[1]}, true
	}
	return nil, false
}

// resultFields are the fields of run()'s result (NewResult builds exactly these).
var resultFields = []string{"duration_ms", "error", "ok", "output", "stages"}

// notRunResult is run()'s result under check. Its type is not "struct" on purpose:
// starlarkstruct compares a struct only with *starlarkstruct.Struct values.
type notRunResult struct{ pos string }

var (
	_ starlark.HasAttrs   = (*notRunResult)(nil)
	_ starlark.Comparable = (*notRunResult)(nil)
)

func (r *notRunResult) stop() error { return &NotRunError{RunPos: r.pos} }

func (r *notRunResult) String() string        { return fmt.Sprintf("<result of run() at %s: not run>", r.pos) }
func (r *notRunResult) Type() string          { return "result" }
func (r *notRunResult) Freeze()               {}
func (r *notRunResult) Truth() starlark.Bool  { return starlark.True } // a real result is a non-empty struct
func (r *notRunResult) Hash() (uint32, error) { return 0, r.stop() }
func (r *notRunResult) AttrNames() []string   { return append([]string(nil), resultFields...) }

// Attr stops the program for a field a real result has; other names report "no such
// field", as they would under exec.
func (r *notRunResult) Attr(name string) (starlark.Value, error) {
	for _, f := range resultFields {
		if f == name {
			return nil, r.stop()
		}
	}
	return nil, nil
}

// CompareSameType stops the program: whether two results are equal depends on them.
func (r *notRunResult) CompareSameType(syntax.Token, starlark.Value, int) (bool, error) {
	return false, r.stop()
}

// getattrBuiltin is Starlark's getattr, except that reading a result's field under
// check stops the program as r.field does. The universal getattr turns any error into
// its default, which would let check carry on with a value exec never produces.
func getattrBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) >= 2 {
		if r, ok := args[0].(*notRunResult); ok {
			if name, ok := args[1].(starlark.String); ok {
				if _, err := r.Attr(string(name)); err != nil {
					return nil, err
				}
			}
		}
	}
	// CallInternal runs the universal getattr in this builtin's frame, so its own
	// errors still read "getattr: ..." at the caller's position.
	return starlark.Universe["getattr"].(*starlark.Builtin).CallInternal(thread, args, kwargs)
}
