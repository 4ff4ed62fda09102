package llmproxy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/internal/anthropictest"
)

// TestStreamThroughProxyToScriptedAPI streams a scripted turn through the proxy and checks
// that the scripted API got the real key and the guest got the stream unchanged.
func TestStreamThroughProxyToScriptedAPI(t *testing.T) {
	api := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Text("hello"), anthropictest.Bash("ls")),
		anthropictest.Reply(anthropictest.Text("hello"), anthropictest.Bash("ls")),
	}})
	_, url := newProxy(t, Config{BaseURL: api.URL})
	body := `{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	read := func(base string) string {
		_, b := post(t, base+"/v1/messages?beta=true", body, map[string]string{"X-Api-Key": placeholder})
		return b
	}
	viaProxy, direct := read(url), read(api.URL)
	// The scripted ids count up per reply; everything else must be byte for byte the same.
	normalize := strings.NewReplacer("000001", "N", "000002", "M", "000003", "N", "000004", "M").Replace
	if normalize(viaProxy) != normalize(direct) || !strings.Contains(viaProxy, "event: message_stop") {
		t.Errorf("stream through the proxy:\n%s\ndirect:\n%s", viaProxy, direct)
	}
	reqs := api.MessageRequests()
	if got := reqs[0].Header.Get("X-Api-Key"); got != testKey {
		t.Errorf("scripted API got x-api-key %q through the proxy, want the real key", got)
	}
}

// TestRealClaudeCodeThroughProxy is the contract check: the real claude-code, holding only a
// placeholder, runs a tool call through the proxy; the provider sees the real key, claude's
// output and files never do.
func TestRealClaudeCodeThroughProxy(t *testing.T) {
	bin := anthropictest.ClaudeBinary(t)
	api := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Bash("echo proxied > proxied.txt; env")),
		anthropictest.Reply(anthropictest.Text("Finished through the proxy.")),
	}})
	p, url := newProxy(t, Config{BaseURL: api.URL})
	dir := anthropictest.WorkDir(t)
	out, err := anthropictest.Claude{Binary: bin, BaseURL: url, APIKey: placeholder, Prompt: "go", Dir: dir}.Run(t)
	if err != nil {
		t.Fatalf("claude: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(`"result":"Finished through the proxy."`)) {
		t.Errorf("no result event with the scripted text in:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "proxied.txt")); err != nil || string(b) != "proxied\n" {
		t.Errorf("proxied.txt %q (%v)", b, err)
	}
	reqs := api.MessageRequests()
	if len(reqs) != 2 {
		t.Fatalf("scripted API got %d message requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Header.Get("X-Api-Key"); got != testKey {
			t.Errorf("request %d reached the provider with x-api-key %q, want the real key", i, got)
		}
	}
	if bytes.Contains(out, []byte(testKey)) {
		t.Errorf("the key appears in claude's output")
	}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(testKey)) {
				t.Errorf("the key appears in %s", path)
			}
		}
		return nil
	})
	if s := finalStats(t, p); s.Status[200] != 2 || s.BytesIn == 0 || s.BytesOut == 0 {
		t.Errorf("proxy stats %+v; want two 200s with bytes both ways", s)
	}
}
