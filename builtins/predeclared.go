package builtins

import (
	"fmt"

	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Predeclared returns the DSL's global names: box, step, skill, llm, mount, pipe, fan_out,
// run, and the json, time, math and struct helpers from go.starlark.net; it also
// shadows Starlark's universal builtins with wrappers whose keyword-argument errors
// name the argument (see namingKeywords), and getattr with one that respects results
// under check (see getattrBuiltin). Each call returns a fresh dict; the values in it
// hold no state, so threads may share them.
func Predeclared() starlark.StringDict {
	pre := universe()
	dsl := starlark.StringDict{
		"box":     starlark.NewBuiltin("box", boxBuiltin),
		"step":    starlark.NewBuiltin("step", stepBuiltin),
		"skill":   starlark.NewBuiltin("skill", skillBuiltin),
		"llm":     llmModule(),
		"mount":   starlark.NewBuiltin("mount", mountBuiltin),
		"pipe":    starlark.NewBuiltin("pipe", pipeBuiltin),
		"fan_out": starlark.NewBuiltin("fan_out", fanOutBuiltin),
		"run":     starlark.NewBuiltin("run", runBuiltin),
		"json":    namingModule(json.Module),
		"time":    namingModule(time.Module),
		"math":    namingModule(math.Module),
		"struct":  starlark.NewBuiltin("struct", structBuiltin),
		"getattr": namingKeywords(starlark.NewBuiltin("getattr", getattrBuiltin)),
	}
	for k, v := range dsl {
		pre[k] = v
	}
	return pre
}

// structBuiltin is starlarkstruct.Make with a message that says what was wrong: Make
// answers positional arguments with "unexpected positional arguments", naming none.
func structBuiltin(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) > 0 {
		return nil, fmt.Errorf("%s: unexpected positional argument %s; struct takes keyword arguments only, e.g. struct(name = \"x\")", fn.Name(), shortRepr(args[0]))
	}
	return starlarkstruct.Make(thread, fn, args, kwargs)
}

// shortRepr is a value's repr, cut short so a huge argument cannot flood a message.
func shortRepr(v starlark.Value) string {
	const limit = 40
	s := v.String()
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
