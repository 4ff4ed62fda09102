package starlark

import (
	"errors"
	"fmt"
	"strings"

	"github.com/voidbox/voidbox/builtins"
	"go.starlark.net/resolve"
	sk "go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// builtinFile is the file name Starlark gives frames of Go builtins.
const builtinFile = "<builtin>"

// FormatError renders an error from ExecFile or the REPL for a person: it points at the
// user's source as file:line:col.
//
//   - syntax errors: "f.star:3:7: syntax error: got newline, want ')'"
//   - resolve errors: "f.star:2:1: undefined: boxx", one line each
//   - evaluation errors: "f.star:12:9: box: memory_mb must be an int, got string" at the
//     innermost Starlark frame (for a builtin's error, its call site), then the traceback
//     when the error was raised inside a user function. An error raised inside the
//     embedded library is headed by the user's own call into it (the library frames
//     follow in the traceback): the user's line is the one to change.
//   - a program under check that uses a run() result (builtins.NotRunError): one line,
//     "f.star:3:9: check stops here: ...", at the line that uses it
//   - source errors: "f.star:3:7: source is not valid UTF-8"
//   - errors inside load()ed modules are reported where they happened, followed by one
//     "  loaded from f.star:1:1" line per load() on the way
//
// Other errors print as they are.
func FormatError(err error) string {
	if err == nil {
		return ""
	}
	// Walk the cause chain: each load() adds an EvalError around the loaded module's error.
	var loads []string
	for {
		var ev *sk.EvalError
		if !errors.As(err, &ev) {
			break
		}
		inner := errors.Unwrap(ev)
		if inner == nil || !isLoadFailure(inner) {
			return formatEval(ev) + loadedFrom(loads)
		}
		loads = append(loads, innermostPos(ev))
		err = inner
	}
	return formatPlain(err) + loadedFrom(loads)
}

// isLoadFailure says whether an EvalError's cause is a load() of a module that failed with
// an error we can point into. Other load failures (file not found, a cycle) are reported
// at the load statement.
func isLoadFailure(cause error) bool {
	if !strings.HasPrefix(cause.Error(), "cannot load ") {
		return false
	}
	next := errors.Unwrap(cause)
	if next == nil {
		return false
	}
	var ev *sk.EvalError
	var se syntax.Error
	var re resolve.ErrorList
	var src *SourceError
	return errors.As(next, &ev) || errors.As(next, &se) || errors.As(next, &re) || errors.As(next, &src)
}

func loadedFrom(positions []string) string {
	var b strings.Builder
	for i := len(positions) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "\n  loaded from %s", positions[i])
	}
	return b.String()
}

func formatPlain(err error) string {
	var se syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: syntax error: %s", se.Pos, se.Msg)
	}
	var src *SourceError
	if errors.As(err, &src) {
		return src.Error()
	}
	var re resolve.ErrorList
	if errors.As(err, &re) {
		lines := make([]string, len(re))
		for i, e := range re {
			lines[i] = fmt.Sprintf("%s: %s", e.Pos, e.Msg)
		}
		return strings.Join(lines, "\n")
	}
	return err.Error()
}

// formatEval prints an evaluation error at its innermost Starlark frame in a user file.
func formatEval(ev *sk.EvalError) string {
	stack, builtin := starlarkFrames(ev.CallStack)
	if notRun, ok := builtins.AsNotRun(ev); ok {
		// Not a mistake in the program: say where check stopped and why, nothing more
		// (a builtin that met the result, like json.encode, may have wrapped the text).
		if len(stack) == 0 {
			return notRun.Error()
		}
		return fmt.Sprintf("%s: %s", stack[userFrame(stack)].Pos, notRun.Error())
	}
	msg := ev.Msg
	inLibrary := len(stack) > 0 && strings.HasPrefix(stack[len(stack)-1].Pos.Filename(), StdlibPrefix)
	switch {
	case inLibrary && builtin == "fail":
		// A library's fail() is its argument check and names the library function
		// itself ("head: n must be ..."); "fail: " would only be noise.
		msg = strings.TrimPrefix(msg, "fail: ")
	case builtin != "" && !strings.HasPrefix(msg, builtin+":"):
		// Name the builtin so "got string, want int" says whose argument it was.
		msg = builtin + ": " + msg
	}
	if len(stack) == 0 {
		return msg
	}
	head := fmt.Sprintf("%s: %s", stack[userFrame(stack)].Pos, msg)
	if len(stack) == 1 {
		return head
	}
	return head + "\n" + strings.TrimSuffix(stack.String(), "\n")
}

// userFrame is the index of the innermost frame outside the embedded library, or of
// the innermost frame when every frame is in the library.
func userFrame(stack sk.CallStack) int {
	for i := len(stack) - 1; i >= 0; i-- {
		if !strings.HasPrefix(stack[i].Pos.Filename(), StdlibPrefix) {
			return i
		}
	}
	return len(stack) - 1
}

// starlarkFrames drops a trailing builtin frame (the failing builtin) and returns its name.
func starlarkFrames(stack sk.CallStack) (sk.CallStack, string) {
	if n := len(stack); n > 0 && stack[n-1].Pos.Filename() == builtinFile {
		return stack[:n-1], stack[n-1].Name
	}
	return stack, ""
}

func innermostPos(ev *sk.EvalError) string {
	stack, _ := starlarkFrames(ev.CallStack)
	if len(stack) == 0 {
		return "?"
	}
	return stack[len(stack)-1].Pos.String()
}
