package builtins

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/stdlib"
	"go.starlark.net/starlark"
)

const prefixes = `"file:", "agent:", "cli:", "mcp:", "remote:" (or the keyword forms skill(image=REF, mount=PATH) and skill(mcp=COMMAND, args=[...]))`

func TestSkillArgumentErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.md")
	if err := os.WriteFile(big, make([]byte, maxSkillFile+1), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "p.star")
	runErrCases(t, file, []errCase{
		{"agent", `skill("agent:claude-code")`, ""},
		{"cli", `skill("cli:jq", description = "JSON tool")`, ""},
		{"mcp", `skill("mcp:npx -y server")`, ""},
		{"remote", `skill("remote:https://mcp.example.com/sse")`, ""},
		{"image", `skill(image = "ghcr.io/org/tools:1.2@sha256:` + strings.Repeat("a", 64) + `", mount = "/opt/tools")`, ""},
		{"image port", `skill(image = "localhost:5000/tools", mount = "/opt/tools")`, ""},
		{"mcp kw", `skill(mcp = "server", args = ["--x", "a b"], env = {"TOKEN": "t"})`, ""},
		{"nothing", `skill()`, `skill: give exactly one of a spec string (like "agent:claude-code"), image= or mcp=`},
		{"two forms", `skill("cli:jq", image = "alpine", mount = "/t")`, `skill: give exactly one of a spec string (like "agent:claude-code"), image= or mcp=`},
		{"spec type", `skill(1)`, `skill: spec must be a string, got int`},
		{"no prefix", `skill("review.md")`, `skill: spec "review.md" has no kind prefix; valid prefixes are ` + prefixes},
		{"unknown prefix", `skill("tool:jq")`, `skill: unknown skill kind "tool" in "tool:jq"; valid prefixes are ` + prefixes},
		{"empty value", `skill("cli:")`, `skill: spec "cli:" has nothing after "cli:"`},
		{"unknown agent", `skill("agent:codex")`, `skill: unknown agent "codex"; known agents: claude-code`},
		{"cli path", `skill("cli:/bin/sh")`, `skill: cli name "/bin/sh" must be a command name (letters, digits, '_', '.', '+', '-'), not a path or a command line`},
		{"mcp blank", `skill("mcp:  ")`, `skill: spec "mcp:  " has nothing after "mcp:"`},
		{"remote scheme", `skill("remote:ftp://x")`, `skill: remote "ftp://x" must be an http or https URL with a host (e.g. "https://example.com/mcp")`},
		{"remote no host", `skill("remote:https://")`, `skill: remote "https://" must be an http or https URL with a host (e.g. "https://example.com/mcp")`},
		{"file empty", `skill("file:")`, `skill: "file:" needs a path, e.g. "file:skills/review.md"`},
		{"file missing", `skill("file:nope/x.md")`, `skill: skill file ` + filepath.Join(dir, "nope/x.md") + ` does not exist`},
		{"file dir", `skill("file:.")`, `skill: skill file ` + dir + ` is a directory; name a markdown file`},
		{"file big", `skill("file:big.md")`, `skill: skill file ` + big + ` is larger than the 1 MiB limit`},
		{"stdlib missing", `skill("file:@stdlib//skills/nope.md")`, `skill: skill file @stdlib//skills/nope.md does not exist in the embedded library`},
		{"stdlib escape", `skill("file:@stdlib//../x.md")`, `skill: skill file @stdlib//../x.md is outside the embedded library`},
		{"description type", `skill("cli:jq", description = 1)`, `skill: description must be a string, got int`},
		{"image no mount", `skill(image = "alpine")`, `skill: image= needs mount=, the absolute guest path to mount the image at`},
		{"image bad", `skill(image = "a b", mount = "/t")`, `skill: image: "a b" is not a valid OCI image reference (path component "a b" must be lower-case letters and digits separated by '.', '_' or '-'; e.g. "docker.io/library/alpine:3.20")`},
		{"image bad tag", `skill(image = "alpine:t@g", mount = "/t")`, `skill: image: "alpine:t@g" is not a valid OCI image reference (the digest after '@' must look like sha256:<hex>; e.g. "docker.io/library/alpine:3.20")`},
		{"image bad registry", `skill(image = "bad_host.io/x", mount = "/t")`, `skill: image: "bad_host.io/x" is not a valid OCI image reference (registry "bad_host.io" is not a host name; e.g. "docker.io/library/alpine:3.20")`},
		{"mount relative", `skill(image = "alpine", mount = "opt")`, `skill: mount: guest path "opt" must be absolute (start with /)`},
		{"mount dotdot", `skill(image = "alpine", mount = "/opt/../etc")`, `skill: mount: guest path "/opt/../etc" must be clean (no "..", ".", "//" or trailing "/"): "/etc"`},
		{"mount root", `skill(image = "alpine", mount = "/")`, `skill: mount: guest path "/" must not be the guest root / (use image= for a root file system)`},
		{"mount without image", `skill("cli:jq", mount = "/t")`, `skill: mount= only goes with image=, e.g. skill(image="ghcr.io/org/tools:1", mount="/opt/tools")`},
		{"args without mcp", `skill("cli:jq", args = [])`, `skill: args= and env= only go with mcp=, e.g. skill(mcp="npx", args=["-y", "server"])`},
		{"mcp empty", `skill(mcp = "")`, `skill: mcp must name a command, got an empty string`},
		{"mcp args type", `skill(mcp = "s", args = "x")`, `skill: args must be a list of strings, got string`},
		{"mcp env", `skill(mcp = "s", env = {"a-b": "x"})`, `skill: env key "a-b" is not a valid environment variable name (letters, digits and '_', not starting with a digit)`},
	})
}

func skillOf(t *testing.T, v starlark.Value) runtime.Skill {
	t.Helper()
	s, ok := v.(*Skill)
	if !ok {
		t.Fatalf("got %s, want a skill", v.Type())
	}
	return s.skill
}

func TestSkillValues(t *testing.T) {
	g := mustExec(t, "p.star", `
a = skill("agent:claude-code")
m = skill("mcp:npx -y @org/server")
k = skill(mcp = "/usr/bin/srv", args = ["a b"], env = {"T": "x"}, description = "d")
r = skill("remote:https://mcp.example.com/sse")
i = skill(image = "ghcr.io/org/tools:1", mount = "/opt/tools")
strs = [str(a), str(m), str(k), str(r), str(i)]
i_mount = i.mount
k_args = k.args
`, nil)
	cases := map[string]runtime.Skill{
		"a": {Kind: runtime.SkillAgent, Name: "claude-code"},
		"m": {Kind: runtime.SkillMCP, Name: "npx", Command: "npx", Args: []string{"-y", "@org/server"}},
		"k": {Kind: runtime.SkillMCP, Name: "srv", Command: "/usr/bin/srv", Args: []string{"a b"}, Env: map[string]string{"T": "x"}, Description: "d"},
		"r": {Kind: runtime.SkillRemote, Name: "https://mcp.example.com/sse", URL: "https://mcp.example.com/sse"},
		"i": {Kind: runtime.SkillImage, Name: "ghcr.io/org/tools:1", Image: "ghcr.io/org/tools:1", MountPath: "/opt/tools"},
	}
	for name, want := range cases {
		if got := skillOf(t, g[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v\nwant %+v", name, got, want)
		}
	}
	wantStrs := `["skill(\"agent:claude-code\")", "skill(mcp=\"npx -y @org/server\")", "skill(mcp=\"/usr/bin/srv a b\")", "skill(\"remote:https://mcp.example.com/sse\")", "skill(image=\"ghcr.io/org/tools:1\", mount=\"/opt/tools\")"]`
	if got := g["strs"].String(); got != wantStrs {
		t.Errorf("strs = %s\nwant %s", got, wantStrs)
	}
	if g["i_mount"].String() != `"/opt/tools"` || g["k_args"].String() != `["a b"]` {
		t.Errorf("attrs: i.mount=%s k.args=%s", g["i_mount"], g["k_args"])
	}
}

// TestRelativePaths checks that skill() and mount() resolve relative paths against
// the file whose code calls them, also when that code is a function in a library
// in another directory, and that the embedded library reads from stdlib.FS.
func TestRelativePaths(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("skills/top.md", "top skill")
	write("lib/skills/lib.md", "lib skill")
	if err := os.MkdirAll(filepath.Join(root, "lib", "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	libFile := write("lib/lib.star", "")

	// The library module: its functions call skill() and mount() with paths
	// relative to lib/.
	libSrc := `
def make():
    return skill("file:skills/lib.md"), mount("data", "/data", mode = "rw")
`
	lib := mustExec(t, libFile, libSrc, nil)
	pre := Predeclared()
	pre["make"] = lib["make"]
	mainSrc := `
top = skill("file:skills/top.md")
lib_skill, lib_mount = make()
here = mount(".", "/w")
`
	g, err := execWith(t, filepath.Join(root, "main.star"), mainSrc, pre, nil)
	if err != nil {
		t.Fatalf("main: %v", err)
	}
	if s := skillOf(t, g["top"]); s.Path != filepath.Join(root, "skills/top.md") || s.Content != "top skill" || s.Name != "top.md" {
		t.Errorf("top = %+v", s)
	}
	if s := skillOf(t, g["lib_skill"]); s.Path != filepath.Join(root, "lib/skills/lib.md") || s.Content != "lib skill" {
		t.Errorf("lib skill = %+v", s)
	}
	if m := g["lib_mount"].(*Mount).mount; m != (runtime.Mount{Host: filepath.Join(root, "lib/data"), Guest: "/data", Mode: runtime.MountRW}) {
		t.Errorf("lib mount = %+v", m)
	}
	if m := g["here"].(*Mount).mount; m.Host != root || m.Mode != runtime.MountRO {
		t.Errorf("here mount = %+v", m)
	}

	// A file named relative to the working directory resolves to an absolute path.
	t.Chdir(root)
	g = mustExec(t, "lib/lib.star", `s = skill("file:skills/lib.md")`, nil)
	if s := skillOf(t, g["s"]); s.Path != filepath.Join(root, "lib/skills/lib.md") {
		t.Errorf("cwd-relative module: Path = %q", s.Path)
	}
	// REPL input has no file: paths are relative to the working directory.
	g = mustExec(t, "<stdin>", `s = skill("file:skills/top.md")`+"\n"+`m = mount("lib", "/l")`, nil)
	if s := skillOf(t, g["s"]); s.Path != filepath.Join(root, "skills/top.md") {
		t.Errorf("<stdin> skill Path = %q", s.Path)
	}
	if m := g["m"].(*Mount).mount; m.Host != filepath.Join(root, "lib") {
		t.Errorf("<stdin> mount Host = %q", m.Host)
	}
}

func TestStdlibPaths(t *testing.T) {
	want, err := stdlib.FS.ReadFile("skills/review.md")
	if err != nil {
		t.Fatalf("stdlib has no skills/review.md: %v", err)
	}
	g := mustExec(t, "@stdlib//text.star", `s = skill("file:skills/review.md")`, nil)
	if s := skillOf(t, g["s"]); s.Path != "@stdlib//skills/review.md" || s.Content != string(want) || s.Name != "review.md" {
		t.Errorf("stdlib skill = %+v", s)
	}
	// A user file may name the embedded skill explicitly.
	g = mustExec(t, "/w/p.star", `s = skill("file:@stdlib//skills/review.md")`, nil)
	if s := skillOf(t, g["s"]); s.Path != "@stdlib//skills/review.md" {
		t.Errorf("explicit stdlib skill Path = %q", s.Path)
	}
	_, err = exec(t, "@stdlib//text.star", `mount("/", "/d")`, nil)
	if want := `mount: cannot be called from the embedded library (@stdlib//text.star); take a mount as a parameter instead`; err == nil || err.Error() != want {
		t.Errorf("mount in stdlib: err = %v, want %s", err, want)
	}
}
