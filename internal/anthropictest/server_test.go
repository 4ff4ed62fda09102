package anthropictest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// sseEvent is one Server-Sent Event: its event: name and its data: JSON.
type sseEvent struct {
	name string
	data map[string]any
	raw  string
}

// readSSE parses an SSE stream as a client does: "event:" and "data:" lines, a blank line
// ending each event. Every data line must be JSON whose "type" is the event's name, as in
// Anthropic's streams.
func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var events []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name == "" {
				t.Fatalf("blank line without an event before it (after %d events)", len(events))
			}
			events = append(events, cur)
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.raw = strings.TrimPrefix(line, "data: ")
			if err := json.Unmarshal([]byte(cur.raw), &cur.data); err != nil {
				t.Fatalf("event %s: data %q is not JSON: %v", cur.name, cur.raw, err)
			}
			if cur.data["type"] != cur.name {
				t.Fatalf("event %s carries data of type %v", cur.name, cur.data["type"])
			}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if cur.name != "" {
		t.Fatalf("stream ended inside event %s", cur.name)
	}
	return events
}

func postJSON(t *testing.T, url string, body any, header map[string]string) *http.Response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func userMessage(text string) map[string]any {
	return map[string]any{"model": "claude-test", "max_tokens": 1024, "stream": true,
		"messages": []any{map[string]any{"role": "user", "content": text}}}
}

func TestStreamedTurnHasAnthropicsEventSequence(t *testing.T) {
	s := New(t, Script{Turns: []Turn{Reply(Text("Running it now."), Bash("echo hi > out.txt"))}})
	resp := postJSON(t, s.URL+"/v1/messages?beta=true", userMessage("go"), nil)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("status %d, content type %q; want 200 text/event-stream", resp.StatusCode, ct)
	}
	events := readSSE(t, resp.Body)

	var names []string
	for _, e := range events {
		if e.name != "content_block_delta" || len(names) == 0 || names[len(names)-1] != "content_block_delta" {
			names = append(names, e.name)
		}
	}
	want := []string{"message_start", "ping",
		"content_block_start", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("event sequence (deltas folded) %v, want %v", names, want)
	}

	start := events[0].data["message"].(map[string]any)
	if start["role"] != "assistant" || start["model"] != "claude-test" || start["stop_reason"] != nil ||
		len(start["content"].([]any)) != 0 || !strings.HasPrefix(start["id"].(string), "msg_") {
		t.Errorf("message_start message %v; want an empty assistant message of the request's model", start)
	}

	// Rebuild the blocks from the deltas, as a client does.
	texts := map[int]string{}
	jsons := map[int]string{}
	opened := map[int]map[string]any{}
	deltas := map[int]int{}
	for _, e := range events {
		idx, _ := e.data["index"].(float64)
		i := int(idx)
		switch e.name {
		case "content_block_start":
			opened[i] = e.data["content_block"].(map[string]any)
		case "content_block_delta":
			deltas[i]++
			d := e.data["delta"].(map[string]any)
			switch d["type"] {
			case "text_delta":
				texts[i] += d["text"].(string)
			case "input_json_delta":
				jsons[i] += d["partial_json"].(string)
			default:
				t.Errorf("delta type %v", d["type"])
			}
		}
	}
	if opened[0]["type"] != "text" || opened[0]["text"] != "" {
		t.Errorf("block 0 opens as %v; want an empty text block", opened[0])
	}
	if texts[0] != "Running it now." || deltas[0] < 2 {
		t.Errorf("block 0 text %q in %d deltas; want the script's text in pieces", texts[0], deltas[0])
	}
	if opened[1]["type"] != "tool_use" || opened[1]["name"] != "Bash" || !reflect.DeepEqual(opened[1]["input"], map[string]any{}) ||
		!strings.HasPrefix(opened[1]["id"].(string), "toolu_") {
		t.Errorf("block 1 opens as %v; want a tool_use Bash with input {} and a toolu_ id", opened[1])
	}
	var input map[string]string
	if err := json.Unmarshal([]byte(jsons[1]), &input); err != nil || input["command"] != "echo hi > out.txt" {
		t.Errorf("block 1 input_json_delta pieces join to %q (%v); want the Bash command", jsons[1], err)
	}
	md := events[len(events)-2].data
	if md["delta"].(map[string]any)["stop_reason"] != "tool_use" {
		t.Errorf("message_delta %v; want stop_reason tool_use", md)
	}
	if usage := md["usage"].(map[string]any); usage["output_tokens"].(float64) < 1 || usage["input_tokens"].(float64) < 1 {
		t.Errorf("message_delta usage %v; want input and output token counts", usage)
	}
}

func TestNonStreamingTurnIsOneMessage(t *testing.T) {
	s := New(t, Script{Model: "claude-scripted", Turns: []Turn{Reply(Text("done"), Write("/workspace/a.txt", "A"))}})
	req := userMessage("go")
	req["stream"] = false
	resp := postJSON(t, s.URL+"/v1/messages", req, nil)
	var msg struct {
		Type       string `json:"type"`
		Role       string `json:"role"`
		Model      string `json:"model"`
		StopReason string `json:"stop_reason"`
		Content    []struct {
			Type  string            `json:"type"`
			Text  string            `json:"text"`
			Name  string            `json:"name"`
			Input map[string]string `json:"input"`
		} `json:"content"`
		Usage struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&msg); err != nil {
		t.Fatal(err)
	}
	if msg.Type != "message" || msg.Role != "assistant" || msg.Model != "claude-scripted" || msg.StopReason != "tool_use" ||
		len(msg.Content) != 2 || msg.Content[0].Text != "done" || msg.Content[1].Name != "Write" ||
		msg.Content[1].Input["file_path"] != "/workspace/a.txt" || msg.Content[1].Input["content"] != "A" ||
		msg.Usage.InputTokens < 1 || msg.Usage.OutputTokens < 1 {
		t.Errorf("message %+v", msg)
	}
}

func TestRequestsAreRecorded(t *testing.T) {
	s := New(t, Script{Turns: []Turn{Reply(Bash("ls")), Reply(Text("bye"))}})
	postJSON(t, s.URL+"/v1/messages", userMessage("first"), map[string]string{"X-Api-Key": "sk-recorded"})
	postJSON(t, s.URL+"/v1/messages", map[string]any{
		"model": "claude-test", "max_tokens": 10,
		"system": []any{map[string]any{"type": "text", "text": "You are claude."}, map[string]any{"type": "text", "text": "Skill review: checks diffs"}},
		"tools":  []any{map[string]any{"name": "Bash"}, map[string]any{"name": "Write"}},
		"messages": []any{
			map[string]any{"role": "user", "content": "first"},
			map[string]any{"role": "system", "content": []any{map[string]any{"type": "text", "text": "Skill greet: greets"}}},
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": map[string]any{"command": "ls"}}}},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": []any{map[string]any{"type": "text", "text": "input\n"}}}}},
		},
	}, nil)
	postJSON(t, s.URL+"/v1/messages/count_tokens", userMessage("x"), nil)

	reqs := s.Requests()
	if len(reqs) != 3 || reqs[2].Path != "/v1/messages/count_tokens" || reqs[2].Turn != -1 {
		t.Fatalf("recorded %d requests %+v; want 3, the last count_tokens with no turn", len(reqs), reqs)
	}
	msgs := s.MessageRequests()
	if len(msgs) != 2 || msgs[0].Turn != 0 || msgs[1].Turn != 1 {
		t.Fatalf("message requests %+v; want turns 0 and 1", msgs)
	}
	if got := msgs[0].Header.Get("X-Api-Key"); got != "sk-recorded" {
		t.Errorf("recorded x-api-key %q", got)
	}
	m, err := msgs[1].Messages()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.SystemText(); got != "You are claude.\nSkill review: checks diffs\nSkill greet: greets" {
		t.Errorf("SystemText %q", got)
	}
	if got := m.ToolNames(); !reflect.DeepEqual(got, []string{"Bash", "Write"}) {
		t.Errorf("ToolNames %v", got)
	}
	if got := m.ToolResults(); !reflect.DeepEqual(got, []ToolResult{{ToolUseID: "toolu_1", Content: "input\n"}}) {
		t.Errorf("ToolResults %+v", got)
	}
	if got := m.Messages[0].Text(); got != "first" {
		t.Errorf("first message text %q", got)
	}
}

func TestErrorTurnsAndExhaustedScript(t *testing.T) {
	overloaded := Error(529, "", "Overloaded")
	s := New(t, Script{Turns: []Turn{
		Error(401, "authentication_error", "invalid x-api-key"),
		Error(500, "", "boom"),
	}, Then: &overloaded})
	s2 := New(t, Script{Turns: []Turn{Reply(Text("only"))}})

	check := func(url string, wantStatus int, wantType, wantMessage string) {
		t.Helper()
		resp := postJSON(t, url+"/v1/messages", userMessage("x"), nil)
		var e struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantStatus || e.Type != "error" || e.Error.Type != wantType || !strings.Contains(e.Error.Message, wantMessage) {
			t.Errorf("got %d %+v; want %d %s containing %q", resp.StatusCode, e, wantStatus, wantType, wantMessage)
		}
	}
	check(s.URL, 401, "authentication_error", "invalid x-api-key")
	check(s.URL, 500, "api_error", "boom")
	check(s.URL, 529, "overloaded_error", "Overloaded")
	check(s.URL, 529, "overloaded_error", "Overloaded")

	postJSON(t, s2.URL+"/v1/messages", userMessage("x"), nil)
	check(s2.URL, 400, "invalid_request_error", "the script has 1 turns and no Then; this is request 2")
}

func TestModelsAndUnknownPaths(t *testing.T) {
	s := New(t, Script{Model: "claude-x"})
	resp, err := http.Get(s.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct{ ID, Type string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) != 1 || list.Data[0].ID != "claude-x" {
		t.Errorf("models %+v (%v)", list, err)
	}
	resp2, err := http.Get(s.URL + "/v1/other")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 404 {
		t.Errorf("unknown path: %d, want 404", resp2.StatusCode)
	}
}

// fatalTB records Fatalf and stops the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBrokenScriptFailsTheTest(t *testing.T) {
	for _, tc := range []struct {
		script Script
		want   string
	}{
		{Script{Turns: []Turn{Reply(ToolUse("", map[string]string{}))}}, "turn 0: block 0: tool_use without a tool name"},
		{Script{Turns: []Turn{Reply(Text("a")), Reply(ToolUse("Bash", []int{1}))}}, "turn 1: block 0: tool_use Bash input \"[1]\" is not a JSON object"},
		{Script{Turns: []Turn{Reply(Block{Type: "image"})}}, `block 0: type "image"`},
		{Script{Then: &Turn{Status: 200}}, "Then: error turn status 200"},
	} {
		f := &fatalTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			New(f, tc.script)
		}()
		<-done
		if !strings.Contains(f.msg, tc.want) {
			t.Errorf("New failed with %q, want it to contain %q", f.msg, tc.want)
		}
	}
}
