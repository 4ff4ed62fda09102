package streamjson

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDeepNestingIsMalformedNotACrash(t *testing.T) {
	line := `{"type":"result","result":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "}\n"
	res, _ := Parse(strings.NewReader(line), Options{})
	if res.Malformed != 1 || res.Done || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "line 1: not a JSON event") {
		t.Errorf("%+v; want the line counted as malformed", res)
	}
}

// FuzzParse feeds arbitrary output, split at an arbitrary point, to the parser: it must not
// panic, must keep within its limits, and must give the same result whole or in two writes.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, len(data)/2)
	}
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","id":"x","name":"Bash","input":{"command":"ls"}}]}}`+"\n"+`{"type":"result","num_turns":1e400}`), 7)
	f.Add([]byte("{\"type\":\"result\",\"result\":\"\xff\xfe\"}\r\n\n\n{"), 3)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		lim := Limits{MaxLineBytes: 4096, MaxToolCalls: 8, MaxToolInputBytes: 512, MaxToolInputTotal: 1024, MaxEvents: 64}
		var live int
		whole := NewParser(Options{Limits: lim, OnToolCall: func(ToolCall) { live++ }})
		whole.Write(data)
		a, errA := whole.Close()

		if split < 0 {
			split = -split
		}
		if len(data) > 0 {
			split %= len(data) + 1
		} else {
			split = 0
		}
		parts := NewParser(Options{Limits: lim})
		parts.Write(data[:split])
		parts.Write(data[split:])
		b, errB := parts.Close()
		if !reflect.DeepEqual(a, b) || (errA == nil) != (errB == nil) {
			t.Fatalf("whole %+v (%v)\nsplit at %d %+v (%v)", a, errA, split, b, errB)
		}

		if len(a.ToolCalls) > lim.MaxToolCalls || live != len(a.ToolCalls) {
			t.Fatalf("%d tool calls kept, %d reported live, limit %d", len(a.ToolCalls), live, lim.MaxToolCalls)
		}
		total := 0
		for _, c := range a.ToolCalls {
			if c.Input != nil && !json.Valid(c.Input) {
				t.Fatalf("tool call input %q is not JSON", c.Input)
			}
			if c.InputTruncated && c.Input != nil {
				t.Fatalf("tool call %+v: InputTruncated with an input", c)
			}
			total += len(c.Input)
			if len(c.Name) > maxNameBytes+3 || len(c.ID) > maxNameBytes+3 {
				t.Fatalf("unbounded name or id: %d, %d bytes", len(c.Name), len(c.ID))
			}
		}
		if total > lim.MaxToolInputTotal {
			t.Fatalf("kept %d input bytes, budget %d", total, lim.MaxToolInputTotal)
		}
		if len(a.Problems) > a.Malformed || len(a.Problems) > 10 {
			t.Fatalf("%d problems for %d malformed lines", len(a.Problems), a.Malformed)
		}
		if a.InputTokens < 0 || a.OutputTokens < 0 || a.Turns < 0 || a.CostUSD < 0 || a.DurationMS < 0 || a.DurationAPIMS < 0 {
			t.Fatalf("negative numbers in %+v", a)
		}
		if a.Done != (errA == nil) || (errA != nil && !bytes.Contains([]byte(errA.Error()), []byte("no result event"))) {
			t.Fatalf("Done %v with error %v", a.Done, errA)
		}
	})
}
