package builtins

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

func TestLLMArgumentErrors(t *testing.T) {
	runErrCases(t, "p.star", []errCase{
		{"claude default", `llm.claude()`, ""},
		{"custom", `llm.custom("https://llm.internal/v1", "m", api_key_env = "LLM_KEY")`, ""},
		{"claude model type", `llm.claude(model = 4)`, `llm.claude: model must be a string, got int`},
		{"claude model empty", `llm.claude("")`, `llm.claude: model must not be empty`},
		{"claude extra", `llm.claude("m", "x")`, `llm.claude: got 2 arguments, want at most 1`},
		{"ollama no model", `llm.ollama()`, `llm.ollama: missing argument for model`},
		{"ollama model empty", `llm.ollama(" ")`, `llm.ollama: model must not be empty`},
		{"ollama url", `llm.ollama("m", base_url = "localhost:11434")`, `llm.ollama: base_url "localhost:11434" must be an http or https URL with a host (e.g. "https://example.com/mcp")`},
		{"ollama url type", `llm.ollama("m", base_url = None)`, `llm.ollama: base_url must be a string, got NoneType`},
		{"custom missing", `llm.custom("https://x")`, `llm.custom: missing argument for model`},
		{"custom url", `llm.custom("x", "m")`, `llm.custom: base_url "x" must be an http or https URL with a host (e.g. "https://example.com/mcp")`},
		{"custom key", `llm.custom("https://x", "m", api_key_env = "my-key")`, `llm.custom: api_key_env "my-key" is not a valid environment variable name (letters, digits and '_', not starting with a digit)`},
		{"custom key type", `llm.custom("https://x", "m", api_key_env = 1)`, `llm.custom: api_key_env must be a string, got int`},
	})
}

func TestLLMValues(t *testing.T) {
	g := mustExec(t, "p.star", `
c = llm.claude()
o = llm.ollama("qwen3-coder")
x = llm.custom(base_url = "https://llm.internal/v1", model = "m", api_key_env = "K")
strs = [str(c), str(o), str(x), type(c)]
o_url = o.base_url
c_url = c.base_url
`, nil)
	want := map[string]runtime.LLM{
		"c": {Provider: "claude", Model: "claude-sonnet-4-5", APIKeyEnv: "ANTHROPIC_API_KEY"},
		"o": {Provider: "ollama", Model: "qwen3-coder", BaseURL: "http://127.0.0.1:11434"},
		"x": {Provider: "custom", Model: "m", BaseURL: "https://llm.internal/v1", APIKeyEnv: "K"},
	}
	for k, w := range want {
		if got := g[k].(*LLM).llm; got != w {
			t.Errorf("%s = %+v, want %+v", k, got, w)
		}
	}
	if got := g["strs"].String(); got != `["llm.claude(\"claude-sonnet-4-5\")", "llm.ollama(\"qwen3-coder\")", "llm.custom(\"m\")", "llm"]` {
		t.Errorf("strs = %s", got)
	}
	if g["o_url"].String() != `"http://127.0.0.1:11434"` || g["c_url"].String() != "None" {
		t.Errorf("base_url attrs: %s %s", g["o_url"], g["c_url"])
	}
}

func TestMountArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	star := filepath.Join(dir, "p.star")
	runErrCases(t, star, []errCase{
		{"ok", `mount(".", "/data")`, ""},
		{"ok rw", `mount("` + dir + `", "/data", mode = "rw")`, ""},
		{"missing guest", `mount(".")`, `mount: missing argument for guest`},
		{"host type", `mount(1, "/d")`, `mount: host must be a string, got int`},
		{"guest type", `mount(".", None)`, `mount: guest must be a string, got NoneType`},
		{"mode", `mount(".", "/d", mode = "wo")`, `mount: mode must be "ro" or "rw", got "wo"`},
		{"mode type", `mount(".", "/d", mode = True)`, `mount: mode must be a string, got bool`},
		{"guest relative", `mount(".", "data")`, `mount: guest: guest path "data" must be absolute (start with /)`},
		{"guest dotdot", `mount(".", "/data/../etc")`, `mount: guest: guest path "/data/../etc" must be clean (no "..", ".", "//" or trailing "/"): "/etc"`},
		{"guest root", `mount(".", "/")`, `mount: guest: guest path "/" must not be the guest root / (use image= for a root file system)`},
		{"guest proc", `mount(".", "/proc/x")`, `mount: guest: guest path "/proc/x" must not be or be under /proc, which the guest needs for itself`},
		{"guest workspace", `mount(".", "/workspace")`, `mount: guest: guest path "/workspace" would hide the stage's /workspace; mount under it instead (e.g. /workspace/data)`},
		{"host empty", `mount("", "/d")`, `mount: host must not be empty; use "." for the script's directory`},
		{"host missing", `mount("nope", "/d")`, `mount: host directory ` + filepath.Join(dir, "nope") + ` does not exist`},
		{"host file", `mount("f.txt", "/d")`, `mount: host path ` + file + ` is not a directory; mount a directory`},
	})
}
