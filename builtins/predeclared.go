package builtins

import (
	"go.starlark.net/lib/json"
	"go.starlark.net/lib/math"
	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Predeclared returns the DSL's global names: box, skill, llm, mount, pipe, fan_out,
// run, and the json, time, math and struct helpers from go.starlark.net. Each call
// returns a fresh dict; the values in it hold no state, so threads may share them.
func Predeclared() starlark.StringDict {
	return starlark.StringDict{
		"box":     starlark.NewBuiltin("box", boxBuiltin),
		"skill":   starlark.NewBuiltin("skill", skillBuiltin),
		"llm":     llmModule(),
		"mount":   starlark.NewBuiltin("mount", mountBuiltin),
		"pipe":    starlark.NewBuiltin("pipe", pipeBuiltin),
		"fan_out": starlark.NewBuiltin("fan_out", fanOutBuiltin),
		"run":     starlark.NewBuiltin("run", runBuiltin),
		"json":    json.Module,
		"time":    time.Module,
		"math":    math.Module,
		"struct":  starlark.NewBuiltin("struct", starlarkstruct.Make),
	}
}
