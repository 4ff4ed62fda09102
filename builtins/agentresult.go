package builtins

import (
	"encoding/json"
	"math"
	"sort"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// agentValue is a stage's `agent` in run() results: None for a command stage or an
// agent that reported nothing, else a struct with result, is_error, cost_usd,
// input_tokens, output_tokens, turns, duration_api_ms, model, session_id and
// tool_calls (a list of structs with name and input, the tool's input decoded).
func agentValue(a *runtime.AgentReport) starlark.Value {
	if a == nil {
		return starlark.None
	}
	calls := make([]starlark.Value, len(a.ToolCalls))
	for i, c := range a.ToolCalls {
		calls[i] = starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
			"name":  starlark.String(c.Name),
			"input": jsonValue(c.Input),
		})
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"result":          starlark.String(a.Result),
		"is_error":        starlark.Bool(a.IsError),
		"cost_usd":        starlark.Float(a.CostUSD),
		"input_tokens":    starlark.MakeInt64(a.InputTokens),
		"output_tokens":   starlark.MakeInt64(a.OutputTokens),
		"turns":           starlark.MakeInt(a.Turns),
		"duration_api_ms": starlark.MakeInt64(a.DurationAPIMS),
		"model":           starlark.String(a.Model),
		"session_id":      starlark.String(a.SessionID),
		"tool_calls":      starlark.NewList(calls),
	})
}

// jsonValue decodes a tool's JSON input into Starlark values; text that is not JSON
// stays a string.
func jsonValue(text string) starlark.Value {
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return starlark.String(text)
	}
	return fromJSON(v)
}

func fromJSON(v any) starlark.Value {
	switch v := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(v)
	case string:
		return starlark.String(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return starlark.MakeInt64(int64(v))
		}
		return starlark.Float(v)
	case []any:
		l := make([]starlark.Value, len(v))
		for i, e := range v {
			l[i] = fromJSON(e)
		}
		return starlark.NewList(l)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := starlark.NewDict(len(v))
		for _, k := range keys {
			_ = d.SetKey(starlark.String(k), fromJSON(v[k]))
		}
		return d
	}
	return starlark.None
}
