package anthropictest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealClaudeCode is the contract check: the real claude-code binary, driven by a script,
// streams three turns from this server, completes a Bash and a Write tool call, sends back
// their results, and shows the model a project skill's description.
func TestRealClaudeCode(t *testing.T) {
	bin := ClaudeBinary(t)
	dir := WorkDir(t)
	written := filepath.Join(dir, "written.txt")
	s := New(t, Script{Turns: []Turn{
		Reply(Text("Running it."), Bash("echo from-bash > bash.txt && cat bash.txt")),
		Reply(Write(written, "from-write\n")),
		Reply(Text("All done.")),
	}})
	out, err := Claude{
		Binary: bin, BaseURL: s.URL, APIKey: "sk-placeholder-for-contract", Prompt: "do the thing", Dir: dir,
		Files: map[string]string{".claude/skills/greet/SKILL.md": "---\nname: greet\ndescription: Greets people in Klingon7731\n---\nSay nuqneH.\n"},
	}.Run(t)
	if err != nil {
		t.Fatalf("claude exited with %v; stdout:\n%s", err, out)
	}

	for path, want := range map[string]string{filepath.Join(dir, "bash.txt"): "from-bash\n", written: "from-write\n"} {
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s: %q (%v); want %q, written by the tool call", path, got, err, want)
		}
	}

	reqs := s.MessageRequests()
	if len(reqs) != 3 {
		t.Fatalf("server answered %d message requests, want the script's 3", len(reqs))
	}
	var sawSkill bool
	for i, r := range reqs {
		if got := r.Header.Get("X-Api-Key"); got != "sk-placeholder-for-contract" {
			t.Errorf("request %d x-api-key %q", i, got)
		}
		m, err := r.Messages()
		if err != nil {
			t.Fatal(err)
		}
		if !m.Stream {
			t.Errorf("request %d did not ask to stream", i)
		}
		sawSkill = sawSkill || strings.Contains(m.SystemText(), "Greets people in Klingon7731")
	}
	if !sawSkill {
		t.Errorf("no request's system prompt shows the model the skill's description")
	}
	m1, _ := reqs[1].Messages()
	if tr := m1.ToolResults(); len(tr) != 1 || !strings.Contains(tr[0].Content, "from-bash") || tr[0].IsError {
		t.Errorf("request 2 tool results %+v; want the Bash output", tr)
	}
	m2, _ := reqs[2].Messages()
	if tr := m2.ToolResults(); len(tr) != 1 || tr[0].IsError || !strings.Contains(tr[0].Content, written) {
		t.Errorf("request 3 tool results %+v; want the Write confirmation naming %s", tr, written)
	}

	var result map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev["type"] == "result" {
			result = ev
		}
	}
	if result == nil || result["result"] != "All done." || result["is_error"] != false || result["num_turns"] != float64(3) {
		t.Errorf("result event %v; want result \"All done.\", is_error false, num_turns 3", result)
	}
}

// TestRealClaudeCodeSeesProviderErrors runs claude against a 401 and a 500 and checks it
// reports each as an error result naming the status.
func TestRealClaudeCodeSeesProviderErrors(t *testing.T) {
	bin := ClaudeBinary(t)
	for _, turn := range []Turn{Error(401, "authentication_error", "invalid x-api-key"), Error(500, "", "scripted failure")} {
		s := New(t, Script{Then: &turn})
		// claude-code retries even a 401 ten times with backoff (minutes); one retry shows
		// the same behaviour quickly.
		out, err := Claude{Binary: bin, BaseURL: s.URL, APIKey: "sk-x", Prompt: "hi", Env: []string{"CLAUDE_CODE_MAX_RETRIES=1"}}.Run(t)
		if err == nil {
			t.Errorf("status %d: claude exited 0; want a failure", turn.Status)
		}
		var result map[string]any
		for _, line := range bytes.Split(out, []byte("\n")) {
			var ev map[string]any
			if json.Unmarshal(line, &ev) == nil && ev["type"] == "result" {
				result = ev
			}
		}
		if result == nil || result["is_error"] != true || result["api_error_status"] != float64(turn.Status) {
			t.Errorf("status %d: result event %v; want is_error and api_error_status %d", turn.Status, result, turn.Status)
		}
		if n := len(s.MessageRequests()); n != 2 {
			t.Errorf("status %d: %d requests; want 2 (one retry)", turn.Status, n)
		}
	}
}
