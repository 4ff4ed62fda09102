package builtins

import (
	"strings"
	"testing"

	"github.com/voidbox/voidbox/runtime"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// The fuzz targets cover every parser of text a .star file controls: image
// references, skill specs, and box() as a whole (egress entries are the network
// package's policy parser, fuzzed there).

func FuzzImageRef(f *testing.F) {
	for _, s := range []string{"alpine", "alpine:3.20", "docker.io/library/alpine:3.20", "localhost:5000/a/b",
		"ghcr.io/org/x@sha256:" + strings.Repeat("ab", 32), "[::1]:5000/x", "A", "a//b", "a:", "@", ":tag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkImageRef(s) != nil {
			return
		}
		if s == "" || strings.ContainsAny(s, " \t\n\x00") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
			t.Fatalf("accepted malformed reference %q", s)
		}
	})
}

func FuzzSkillSpec(f *testing.F) {
	for _, s := range []string{"agent:claude-code", "cli:jq", "mcp:npx -y x", "remote:https://x/y", "remote:", "x", ":", "agent:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "file:") {
			return // reads files; covered by TestRelativePaths
		}
		sk, err := parseSkillSpec("", s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty error for %q", s)
			}
			return
		}
		kind, _, _ := strings.Cut(s, ":")
		if string(sk.Kind) != kind {
			t.Fatalf("%q parsed as kind %q", s, sk.Kind)
		}
		if sk.Kind == runtime.SkillMCP && sk.Command == "" {
			t.Fatalf("%q: mcp skill without a command", s)
		}
	})
}

// FuzzBox drives box() through the interpreter with arbitrary strings in the
// string-valued parameters: it must either build a box or fail with a "box: " error.
func FuzzBox(f *testing.F) {
	f.Add("fetch", "10m", "example.test:80", "stop", "alpine")
	f.Add("", "0s", "10.0.0.0/8", "halt", "A")
	f.Add("a.b-c_d", "1h30m", "[::1]:1", "continue", "ghcr.io/x/y:1")
	f.Fuzz(func(t *testing.T, name, timeout, egress, onFailure, image string) {
		pre := Predeclared()
		pre["N"], pre["T"], pre["E"], pre["F"], pre["I"] = starlark.String(name), starlark.String(timeout),
			starlark.String(egress), starlark.String(onFailure), starlark.String(image)
		th := &starlark.Thread{}
		g, err := starlark.ExecFileOptions(&syntax.FileOptions{}, th, "p.star",
			`b = box(N, cmd = ["x"], timeout = T, network = True, egress = [E], on_failure = F, image = I)`, pre)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "box: ") {
				t.Fatalf("error without the builtin's name: %v", err)
			}
			return
		}
		st := g["b"].(*Box).toStage()
		if st.Name != name || st.Timeout <= 0 || (st.OnFailure != runtime.FailStop && st.OnFailure != runtime.FailContinue) {
			t.Fatalf("accepted an invalid box: %+v", st)
		}
		if _, err := ToNode(g["b"]); err != nil {
			t.Fatalf("valid box does not convert: %v", err)
		}
	})
}
