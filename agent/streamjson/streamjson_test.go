package streamjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The testdata files are real claude-code 2.1.332 output (-p --output-format stream-json
// --verbose) against the scripted API of internal/anthropictest: bash.jsonl one Bash call,
// write.jsonl a Write and a Bash call, error401.jsonl and error500.jsonl a provider refusing.

func parseFile(t *testing.T, name string, opts Options) Result {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Parse(f, opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res.Malformed != 0 {
		t.Errorf("%s: %d malformed lines: %v", name, res.Malformed, res.Problems)
	}
	return res
}

func TestRealBashRun(t *testing.T) {
	var live []ToolCall
	res := parseFile(t, "bash.jsonl", Options{OnToolCall: func(c ToolCall) { live = append(live, c) }})
	want := Result{
		Result: "All done: hello", Subtype: "success", CostUSD: 0.09999999999999999,
		InputTokens: 24790, OutputTokens: 42, Turns: 2, DurationMS: 299, DurationAPIMS: 105,
		Model: "claude-opus-5-5", SessionID: "bd7732e0-00d1-4a4b-a8d6-0b46087271ae",
		ToolCalls: []ToolCall{{
			ID: "toolu_anthropictest000002", Name: "Bash",
			Input: json.RawMessage(`{"command":"echo hello-from-bash > /tmp/llmx-home/out.txt; cat /tmp/llmx-home/out.txt","description":"scripted by anthropictest"}`),
		}},
		Done: true, Events: 6,
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got  %+v\nwant %+v", res, want)
	}
	if !reflect.DeepEqual(live, want.ToolCalls) {
		t.Errorf("OnToolCall saw %+v, want the one Bash call", live)
	}
}

func TestRealWriteRun(t *testing.T) {
	res := parseFile(t, "write.jsonl", Options{})
	if len(res.ToolCalls) != 2 || res.ToolCalls[0].Name != "Write" || res.ToolCalls[1].Name != "Bash" {
		t.Fatalf("tool calls %+v; want Write then Bash", res.ToolCalls)
	}
	var in struct{ FilePath, Content string }
	if err := json.Unmarshal(res.ToolCalls[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	if res.Turns != 3 || res.Result != "ok" || res.IsError || res.CostUSD != 0.149948 || res.InputTokens != 37302 {
		t.Errorf("result %+v", res)
	}
}

func TestRealProviderErrors(t *testing.T) {
	for name, status := range map[string]int{"error401.jsonl": 401, "error500.jsonl": 500} {
		res := parseFile(t, name, Options{})
		if !res.IsError || res.APIErrorStatus != status || res.Turns != 1 || res.Model != "claude-opus-5-5" || len(res.ToolCalls) != 0 {
			t.Errorf("%s: %+v; want an error result with api_error_status %d", name, res, status)
		}
		if !strings.Contains(res.ErrorText(), map[int]string{401: "Invalid API key", 500: "API Error: 500 boom"}[status]) {
			t.Errorf("%s: ErrorText %q", name, res.ErrorText())
		}
	}
}

func TestByteAtATimeMatchesWhole(t *testing.T) {
	data, err := os.ReadFile("testdata/write.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := Parse(bytes.NewReader(data), Options{})
	var calls int
	p := NewParser(Options{OnToolCall: func(ToolCall) { calls++ }})
	firstCall := bytes.Index(data, []byte(`"name":"Write"`))
	lineEnd := firstCall + bytes.IndexByte(data[firstCall:], '\n')
	for i := range data {
		p.Write(data[i : i+1])
		if i == lineEnd-1 && calls != 0 {
			t.Fatalf("tool call reported before its line ended")
		}
		if i == lineEnd && calls != 1 {
			t.Fatalf("tool call not reported when its line ended (calls %d)", calls)
		}
	}
	got, err := p.Close()
	if err != nil || !reflect.DeepEqual(got, whole) {
		t.Errorf("byte at a time: %+v (%v)\nwhole: %+v", got, err, whole)
	}
}

func TestHostileLines(t *testing.T) {
	in := strings.Join([]string{
		`not json at all`,
		`[1,2,3]`,
		`{"no":"type"}`,
		`{"type":7}`,
		`{"type":"system","subtype":"init","model":"m1","session_id":"s1"}`,
		``,
		`{"type":"brand_new_event","usage":"weird","message":42}`,
		`{"type":"assistant","message":{"content":"plain string content"}}`,
		`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}`,
		`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}`,
		`{"type":"assistant","parent_tool_use_id":"task_1","message":{"content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t2","name":"Read","input":{"file_path":"/x"}}]}}`,
		`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t3","name":"Grep","input":{}}]}}`,
		`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t4","name":"Big","input":{"content":"` + strings.Repeat("x", 100) + `"}}]}}`,
		`{"type":"user","message":{"content":[{"type":"tool_result","content":[1,{"a":null}]}]}}`,
		`{"type":"result","subtype":"success","result":"fine","num_turns":-5,"total_cost_usd":-1,"duration_ms":1e300,"usage":{"input_tokens":12.7,"output_tokens":3}}` + "\r",
		`{"type":"result","result":` + strings.Repeat("[", 20000),
		`{"type":"result","result":"` + strings.Repeat("y", 300) + `"}`,
	}, "\n")
	var live []string
	res, err := Parse(strings.NewReader(in), Options{
		OnToolCall: func(c ToolCall) { live = append(live, c.Name) },
		Limits:     Limits{MaxLineBytes: 256, MaxToolCalls: 3, MaxToolInputBytes: 64},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != "m1" || res.SessionID != "s1" || res.Result != "fine" || !res.Done {
		t.Errorf("result %+v", res)
	}
	if res.Turns != 0 || res.CostUSD != 0 || res.DurationMS != math.MaxInt64 || res.InputTokens != 12 || res.OutputTokens != 3 {
		t.Errorf("numbers not clamped: turns %d cost %v duration %d input %d output %d", res.Turns, res.CostUSD, res.DurationMS, res.InputTokens, res.OutputTokens)
	}
	wantCalls := []ToolCall{
		{ID: "t1", Name: "Bash", Input: json.RawMessage(`{"command":"ls"}`)},
		{ID: "t2", Name: "Read", Input: json.RawMessage(`{"file_path":"/x"}`), Parent: "task_1"},
		{ID: "t3", Name: "Grep", Input: json.RawMessage(`{}`)},
	}
	if !reflect.DeepEqual(res.ToolCalls, wantCalls) || res.ToolCallsDropped != 1 || !reflect.DeepEqual(live, []string{"Bash", "Read", "Grep"}) {
		t.Errorf("tool calls %+v, dropped %d, live %v; want t1 once, t2 with its parent, t3, and t4 dropped", res.ToolCalls, res.ToolCallsDropped, live)
	}
	// Malformed: the four bad lines at the top, the 20000-deep result line (too long), and
	// the 300-byte result line (too long).
	wantProblems := []string{
		`line 1: not a JSON object (starts with "n")`,
		`line 2: not a JSON object (starts with "[")`,
		`line 3: JSON object without a "type"`,
		`line 4: not a JSON event: json: cannot unmarshal number into Go struct field envelope.type of type string`,
		`line 16: longer than 256 bytes; skipped`,
		`line 17: longer than 256 bytes; skipped`,
	}
	if res.Malformed != 6 || !reflect.DeepEqual(res.Problems, wantProblems) {
		t.Errorf("malformed %d, problems:\n%s\nwant:\n%s", res.Malformed, strings.Join(res.Problems, "\n"), strings.Join(wantProblems, "\n"))
	}
}

func TestToolInputBudget(t *testing.T) {
	var in strings.Builder
	for i := range 4 {
		in.WriteString(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t` + string(rune('0'+i)) + `","name":"Write","input":{"c":"` + strings.Repeat("z", 40) + `"}}]}}` + "\n")
	}
	in.WriteString(`{"type":"result","result":"r"}`)
	res, err := Parse(strings.NewReader(in.String()), Options{Limits: Limits{MaxToolInputTotal: 100}})
	if err != nil {
		t.Fatal(err)
	}
	var kept, truncated int
	for _, c := range res.ToolCalls {
		if c.InputTruncated && c.Input == nil {
			truncated++
		} else if json.Valid(c.Input) {
			kept++
		}
	}
	if kept != 2 || truncated != 2 {
		t.Errorf("kept %d inputs, truncated %d; want 2 and 2 within the 100-byte budget: %+v", kept, truncated, res.ToolCalls)
	}
}

func TestEventLimitStillReadsTheResult(t *testing.T) {
	var in strings.Builder
	for i := range 5 {
		in.WriteString(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t` + string(rune('0'+i)) + `","name":"Bash","input":{}}]}}` + "\n")
	}
	in.WriteString(`{"type":"result","result":"end","num_turns":5}` + "\n")
	res, err := Parse(strings.NewReader(in.String()), Options{Limits: Limits{MaxEvents: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ToolCalls) != 2 || res.ToolCallsDropped != 3 || res.Result != "end" || res.Turns != 5 || res.Events != 6 {
		t.Errorf("%+v; want 2 calls kept, 3 dropped, and the result read", res)
	}
}

func TestNoResultIsAnError(t *testing.T) {
	res, err := Parse(strings.NewReader("{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"m\"}\ngarbage\n"), Options{})
	if !errors.Is(err, ErrNoResult) || !strings.Contains(err.Error(), "2 lines, 1 events, 1 malformed") ||
		!strings.Contains(err.Error(), "line 2: not a JSON object") {
		t.Errorf("err %v; want ErrNoResult with the counts and the first problem", err)
	}
	if res.Done || res.Model != "m" {
		t.Errorf("partial result %+v; want the model read and Done false", res)
	}
	if _, err := Parse(strings.NewReader(""), Options{}); !errors.Is(err, ErrNoResult) {
		t.Errorf("empty output: %v, want ErrNoResult", err)
	}
}

func TestLastLineWithoutNewline(t *testing.T) {
	res, err := Parse(strings.NewReader(`{"type":"result","result":"tail","is_error":true,"subtype":"error_max_turns"}`), Options{})
	if err != nil || res.Result != "tail" || !res.IsError || res.Subtype != "error_max_turns" {
		t.Errorf("%+v, %v", res, err)
	}
	if got := (Result{Subtype: "error_max_turns", IsError: true}).ErrorText(); got != "claude-code ended with error_max_turns" {
		t.Errorf("ErrorText without a result text: %q", got)
	}
}

func TestLongNamesAreBounded(t *testing.T) {
	name := strings.Repeat("é", 200) // 400 bytes
	res, _ := Parse(strings.NewReader(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"a","name":"`+name+`","input":{}}]}}`), Options{})
	if len(res.ToolCalls) != 1 || len(res.ToolCalls[0].Name) > maxNameBytes+3 || !strings.HasSuffix(res.ToolCalls[0].Name, "é...") {
		t.Errorf("tool name %q (%d bytes); want it cut at a rune boundary near %d bytes", res.ToolCalls[0].Name, len(res.ToolCalls[0].Name), maxNameBytes)
	}
}
