package builtins

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
)

const agent = `skills = [skill("agent:claude-code")]`

func TestBoxArgumentErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	runErrCases(t, "p.star", []errCase{
		{"ok cmd", `box("a", cmd = ["true"])`, ""},
		{"ok agent", `box("a", prompt = "hi", ` + agent + `)`, ""},
		{"ok all", `box(name = "a.b_c-1", prompt = "p", skills = [skill("agent:claude-code")], image = "alpine:3.20", memory_mb = 64, vcpus = 64,
			network = True, egress = ["example.test:80", "10.0.0.0/8", "10.1.0.0/16:5432", "[2001:db8::1]:443", "2001:db8::/32:443", "*.example.test", "host:11434"],
			env = {"A_1": "x"}, timeout = "1h30m", retries = 10, on_failure = "continue",
			llm = llm.claude())`, ""},
		{"ok all command", `box(name = "a.b_c-1", cmd = ("x",), image = "alpine:3.20", memory_mb = 64, vcpus = 64,
			network = True, egress = ["example.test:80"], env = {"A_1": "x"}, timeout = "1h30m", retries = 10,
			on_failure = "continue", allow = ["tr"])`, ""},
		{"missing name", `box(cmd = ["x"])`, `box: missing argument for name`},
		{"unknown kw", `box("a", cmd = ["x"], memory = 1)`, `box: unexpected keyword argument "memory" (did you mean memory_mb?)`},
		{"name type", `box(1, cmd = ["x"])`, `box: name must be a string, got int`},
		{"name empty", `box("", cmd = ["x"])`, `box: name must not be empty`},
		{"name upper", `box("Fetch", cmd = ["x"])`, `box: name "Fetch" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)`},
		{"name too long", `box("` + long + `", cmd = ["x"])`, `box: name "` + long + `" must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)`},
		{"neither", `box("a")`, `box: give cmd (a list of strings) for a command box, or prompt with an agent skill (skill("agent:claude-code")) for an agent box`},
		{"both", `box("a", cmd = ["x"], prompt = "p", ` + agent + `)`, `box: give either cmd (a command box) or prompt (an agent box), not both`},
		{"prompt no agent", `box("a", prompt = "p")`, `box: prompt needs an agent skill in skills, e.g. skills = [skill("agent:claude-code")]`},
		{"prompt only cli", `box("a", prompt = "p", skills = [skill("cli:jq")])`, `box: prompt needs an agent skill in skills, e.g. skills = [skill("agent:claude-code")]`},
		{"prompt empty", `box("a", prompt = "", ` + agent + `)`, `box: prompt must not be empty`},
		{"allow on an agent box", `box("a", prompt = "p", ` + agent + `, allow = ["tr"])`, `box: allow is for a command box: an agent box's tool commands are not checked against it; remove allow`},
		{"llm on a command box", `box("a", cmd = ["x"], llm = llm.claude())`, `box: llm is for an agent box (prompt=); a command box runs no model: remove llm`},
		{"prompt type", `box("a", prompt = 3)`, `box: prompt must be a string, got int`},
		{"cmd type", `box("a", cmd = "ls")`, `box: cmd must be a list of strings, got string`},
		{"cmd empty", `box("a", cmd = [])`, `box: cmd must not be empty; give the program and its arguments, e.g. ["tr", "a-z", "A-Z"]`},
		{"cmd elem", `box("a", cmd = ["ls", 1])`, `box: cmd[1] must be a string, got int`},
		{"cmd program empty", `box("a", cmd = ["", "x"])`, `box: cmd[0] must not be empty (the program to run)`},
		{"cmd only empty", `box("a", cmd = ("",))`, `box: cmd[0] must not be empty (the program to run)`},
		{"cmd empty argument", `box("a", cmd = ["printf", ""])`, ""},
		{"image type", `box("a", cmd = ["x"], image = 1)`, `box: image must be a string, got int`},
		{"image bad", `box("a", cmd = ["x"], image = "Alpine")`, `box: image: "Alpine" is not a valid OCI image reference (path component "Alpine" must be lower-case letters and digits separated by '.', '_' or '-'; e.g. "docker.io/library/alpine:3.20")`},
		{"memory type", `box("a", cmd = ["x"], memory_mb = "512")`, `box: memory_mb must be an int, got string`},
		{"memory low", `box("a", cmd = ["x"], memory_mb = 63)`, `box: memory_mb must be between 64 and 65536, got 63`},
		{"memory high", `box("a", cmd = ["x"], memory_mb = 65537)`, `box: memory_mb must be between 64 and 65536, got 65537`},
		{"memory huge", `box("a", cmd = ["x"], memory_mb = 1 << 70)`, `box: memory_mb must be between 64 and 65536, got 1180591620717411303424`},
		{"vcpus zero", `box("a", cmd = ["x"], vcpus = 0)`, `box: vcpus must be between 1 and 64, got 0`},
		{"vcpus type", `box("a", cmd = ["x"], vcpus = 1.5)`, `box: vcpus must be an int, got float`},
		{"network type", `box("a", cmd = ["x"], network = 1)`, `box: network must be a bool, got int`},
		{"egress no net", `box("a", cmd = ["x"], egress = ["a.test:80"])`, `box: egress needs network = True (a box without network has no NIC to allow traffic on)`},
		{"egress type", `box("a", cmd = ["x"], network = True, egress = "a.test:80")`, `box: egress must be a list of strings, got string`},
		{"egress bad port", `box("a", cmd = ["x"], network = True, egress = ["a.test:0"])`, `box: egress entry "a.test:0": port "0" must be a number from 1 to 65535`},
		{"egress bad host", `box("a", cmd = ["x"], network = True, egress = ["a..b:80"])`, `box: egress entry "a..b:80": host name "a..b" has a label of 0 characters (1 to 63 allowed)`},
		{"egress bad cidr", `box("a", cmd = ["x"], network = True, egress = ["10.0.0.0/33"])`, `box: egress entry "10.0.0.0/33": "10.0.0.0/33" is not a CIDR (write it as 10.0.0.0/8 or 2001:db8::/32)`},
		{"egress cidr port", `box("a", cmd = ["x"], network = True, egress = ["10.0.0.0/8:99999"])`, `box: egress entry "10.0.0.0/8:99999": port "99999" must be a number from 1 to 65535`},
		{"egress host no port", `box("a", cmd = ["x"], network = True, egress = ["host"])`, `box: egress entry "host": needs a port: "host:PORT" opens one port of the host's loopback`},
		{"ports no net", `box("a", cmd = ["x"], ports = ["8080:80"])`, `box: ports needs network = True (a box without network has no NIC to publish a port from)`},
		{"ports form", `box("a", cmd = ["x"], network = True, ports = ["8080"])`, `box: ports[0] port "8080": want HOST:GUEST, e.g. "8080:80" (the host's 127.0.0.1:8080 reaches the guest's port 80)`},
		{"ports range", `box("a", cmd = ["x"], network = True, ports = ["8080:0"])`, `box: ports[0] port "8080:0": guest port "0" is not a TCP port (1 to 65535)`},
		{"ports twice", `box("a", cmd = ["x"], network = True, ports = ["8080:80", "8080:81"])`, `box: ports[1] "8080:81": host port 8080 is published twice`},
		{"env type", `box("a", cmd = ["x"], env = ["A"])`, `box: env must be a dict of strings to strings, got list`},
		{"env key", `box("a", cmd = ["x"], env = {"1A": "x"})`, `box: env key "1A" is not a valid environment variable name (letters, digits and '_', not starting with a digit)`},
		{"env key type", `box("a", cmd = ["x"], env = {1: "x"})`, `box: env keys must be strings, got int`},
		{"env value", `box("a", cmd = ["x"], env = {"A": 1})`, `box: env["A"] must be a string, got int`},
		{"timeout type", `box("a", cmd = ["x"], timeout = 10)`, `box: timeout must be a duration string like "10m" or "90s", got int`},
		{"timeout syntax", `box("a", cmd = ["x"], timeout = "10 minutes")`, `box: timeout "10 minutes" is not a duration (use Go syntax like "10m", "90s", "1h30m")`},
		{"timeout zero", `box("a", cmd = ["x"], timeout = "0s")`, `box: timeout must be greater than zero, got "0s"`},
		{"timeout negative", `box("a", cmd = ["x"], timeout = "-1m")`, `box: timeout must be greater than zero, got "-1m"`},
		{"retries high", `box("a", cmd = ["x"], retries = 11)`, `box: retries must be between 0 and 10, got 11`},
		{"retries negative", `box("a", cmd = ["x"], retries = -1)`, `box: retries must be between 0 and 10, got -1`},
		{"on_failure value", `box("a", cmd = ["x"], on_failure = "halt")`, `box: on_failure must be "stop" or "continue", got "halt"`},
		{"on_failure type", `box("a", cmd = ["x"], on_failure = None)`, `box: on_failure must be a string, got NoneType`},
		{"allow type", `box("a", cmd = ["x"], allow = "tr")`, `box: allow must be a list of strings, got string`},
		{"allow elem", `box("a", cmd = ["x"], allow = [None])`, `box: allow[0] must be a string, got NoneType`},
		{"allow empty", `box("a", cmd = ["x"], allow = [""])`, `box: allow[0] must not be empty`},
		{"skills type", `box("a", cmd = ["x"], skills = skill("cli:jq"))`, `box: skills must be a list of skills, got skill`},
		{"skills elem", `box("a", cmd = ["x"], skills = ["agent:claude-code"])`, `box: skills[0] must be a skill (from skill()), got string`},
		{"llm type", `box("a", cmd = ["x"], llm = "claude")`, `box: llm must be an llm (from llm.claude, llm.ollama or llm.custom), got string`},
		{"mounts type", `box("a", cmd = ["x"], mounts = ["/tmp"])`, `box: mounts[0] must be a mount (from mount()), got string`},
		{"mounts dup guest", `box("a", cmd = ["x"], mounts = [mount("/", "/d"), mount("/tmp", "/d")])`, `box: mounts[1]: guest path "/d" is already used by another mount`},
	})
}

func TestBoxValue(t *testing.T) {
	g := mustExec(t, "/w/p.star", `
b = box("fetch", cmd = ["sh", "-c", "x"], network = True, egress = ["a.test:80"], env = {"K": "v"},
        timeout = "90s", skills = [skill("cli:jq", description = "JSON")])
a = box("think", prompt = "p", skills = [skill("agent:claude-code")], llm = llm.ollama("qwen3-coder"))
s = str(b)
t = type(b)
names = dir(b)
cmd = b.cmd
timeout = b.timeout
model = a.llm.model
skill_kind = b.skills[0].kind
prompt = b.prompt
ok = bool(b)
same = b == b
`, nil)
	want := map[string]string{
		"s": `"box(\"fetch\")"`, "t": `"box"`, "cmd": `["sh", "-c", "x"]`, "timeout": `"1m30s"`,
		"model": `"qwen3-coder"`, "skill_kind": `"cli"`, "prompt": `None`, "ok": `True`, "same": `True`,
		"names": `["allow", "cmd", "egress", "env", "image", "llm", "memory_mb", "mounts", "name", "network", "on_failure", "output_file", "output_step", "ports", "pos", "prompt", "retries", "skills", "steps", "timeout", "vcpus"]`,
	}
	for k, w := range want {
		if got := g[k].String(); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	b := g["b"].(*Box)
	st := b.toStage()
	if st.Pos != "/w/p.star:2:8" {
		t.Errorf("Pos = %q, want /w/p.star:2:8", st.Pos)
	}
	if st.Timeout != 90*time.Second || st.MemoryMB != 512 || st.VCPUs != 1 || st.OnFailure != runtime.FailStop {
		t.Errorf("defaults/timeout wrong: %+v", st)
	}
	if st.LLM != nil {
		t.Errorf("a command box has LLM %+v", st.LLM)
	}
	if al := g["a"].(*Box).toStage().LLM; al == nil || *al != (runtime.LLM{Provider: "ollama", Model: "qwen3-coder", BaseURL: "http://127.0.0.1:11434"}) {
		t.Errorf("LLM = %+v", al)
	}
	if !reflect.DeepEqual(st.Skills, []runtime.Skill{{Kind: runtime.SkillCLI, Name: "jq", Description: "JSON"}}) {
		t.Errorf("Skills = %+v", st.Skills)
	}
	// The runtime copy shares nothing with the value.
	st.Cmd[0], st.Env["K"] = "changed", "changed"
	if again := b.toStage(); again.Cmd[0] != "sh" || again.Env["K"] != "v" {
		t.Errorf("toStage shares state with the box: %+v", again)
	}
}

func TestBoxAttrsAreFrozen(t *testing.T) {
	_, err := exec(t, "p.star", `
b = box("a", cmd = ["x"])
b.cmd.append("y")
`, nil)
	if err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("appending to b.cmd: err = %v, want a frozen-list error", err)
	}
	_, err = exec(t, "p.star", `{box("a", cmd = ["x"]): 1}`, nil)
	if err == nil || err.Error() != "unhashable type: box" {
		t.Fatalf("box as dict key: err = %v, want unhashable type: box", err)
	}
	g := mustExec(t, "p.star", `b = box("a", cmd = ["x"])`, nil)
	g["b"].Freeze()
	if _, err := g["b"].(starlark.HasAttrs).Attr("nope"); err != nil {
		t.Fatalf("unknown attr: %v", err)
	}
}

// An agent box gets 1024 MiB and 2 vCPUs unless it says otherwise.
func TestAgentBoxDefaults(t *testing.T) {
	g := mustExec(t, "/w/p.star", `
a = box("a", prompt = "hi", skills = [skill("agent:claude-code")])
b = box("b", prompt = "hi", skills = [skill("agent:claude-code")], memory_mb = 256, vcpus = 1)
c = box("c", cmd = ["true"])
`, nil)
	for name, want := range map[string][2]int{"a": {1024, 2}, "b": {256, 1}, "c": {512, 1}} {
		st := g[name].(*Box).toStage()
		if got := [2]int{st.MemoryMB, st.VCPUs}; got != want {
			t.Errorf("box %s: memory_mb, vcpus = %v, want %v", name, got, want)
		}
	}
}
