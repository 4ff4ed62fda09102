package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/internal/anthropictest"
	"github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/runtime"
)

// TestAgentMCPFromSkillImage gives an agent box an MCP server that lives only in an
// image skill (a static binary at /opt/mcp/bin/mcpecho): claude-code lists its tool
// to the model and calls it; a cli: skill that is nowhere on PATH fails the stage
// before claude-code starts, naming it.
func TestAgentMCPFromSkillImage(t *testing.T) {
	vmtest.Require(t)
	bin := filepath.Join(t.TempDir(), "mcpecho")
	build := exec.Command("go", "build", "-o", bin, "./testdata/mcpecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build mcpecho: %v\n%s", err, out)
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	reg := ocitest.NewRegistry(t, nil)
	ref := reg.Ref("t/mcp:v1")
	ocitest.Push(t, ref, ocitest.NewImage(t, v1.Config{}, "amd64", ocitest.TarLayer(t, ocitest.Tar(t,
		ocitest.Dir("bin"), ocitest.Entry{Name: "bin/mcpecho", Body: string(code), Type: '0', Mode: 0o755}), false)))

	srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.ToolUse("mcp__mcpecho__echo", map[string]string{"text": "hello mcp"})),
		anthropictest.Reply(anthropictest.Text("The server echoed.")),
	}})
	llm := &runtime.LLM{Provider: "custom", BaseURL: srv.URL, APIKeyEnv: testKeyEnv}
	spec, st := agentSpec("mcp", llm,
		runtime.Skill{Kind: runtime.SkillImage, Name: ref, Image: ref, MountPath: "/opt/mcp"},
		runtime.Skill{Kind: runtime.SkillMCP, Name: "mcpecho", Command: "mcpecho"})
	p := agentProvider(t, "sk-mcp")
	withImageStore(t, p)
	s := openWith(t, p, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := p.RunAgent(ctx, s, st, "")
	if err != nil {
		t.Fatalf("RunAgent: %v\nstderr: %s", err, res.Stderr)
	}
	if res.Stdout != "The server echoed." {
		t.Fatalf("result %q, report %+v", res.Stdout, res.Agent)
	}
	reqs := srv.MessageRequests()
	if len(reqs) != 2 {
		t.Fatalf("%d message requests, want 2", len(reqs))
	}
	first, err := reqs[0].Messages()
	if err != nil {
		t.Fatal(err)
	}
	// claude-code 2.1 offers MCP tools directly or, deferred, by name in its context.
	if !slices.Contains(first.ToolNames(), "mcp__mcpecho__echo") && !strings.Contains(string(reqs[0].Body), "mcp__mcpecho__echo") {
		t.Errorf("the MCP server's tool was not offered to the model: tools %v", first.ToolNames())
	}
	second, _ := reqs[1].Messages()
	if trs := second.ToolResults(); len(trs) != 1 || trs[0].Content != "echo: hello mcp" || trs[0].IsError {
		t.Errorf("the MCP tool's result: %+v", trs)
	}

	st.Skills = append(st.Skills, runtime.Skill{Kind: runtime.SkillCLI, Name: "no-such-tool"})
	_, err = p.RunAgent(ctx, s, st, "")
	if err == nil || !strings.Contains(err.Error(), "no-such-tool not on the agent's PATH") {
		t.Errorf("a missing cli: tool: %v", err)
	}
	if len(srv.MessageRequests()) != 2 {
		t.Error("claude-code ran although a cli: tool was missing")
	}
}

// TestAgentWithImage runs claude-code in a box whose root is an image without glibc
// (busybox): claude-code's disk is mounted beside it and claude runs through that
// disk's loader; its Write tool lands in the image box's /workspace.
func TestAgentWithImage(t *testing.T) {
	vmtest.Require(t)
	reg := ocitest.NewRegistry(t, nil)
	ref := reg.Ref("t/app:v1")
	ocitest.Push(t, ref, busyboxImage(t, v1.Config{Env: []string{"PATH=/bin"}, WorkingDir: "/home/app"}))
	srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Write("/workspace/note.txt", "written by the agent\n")),
		anthropictest.Reply(anthropictest.Text("noted")),
	}})
	spec, st := agentSpec("img", &runtime.LLM{Provider: "custom", BaseURL: srv.URL, APIKeyEnv: testKeyEnv})
	spec.Image = ref
	p := agentProvider(t, "sk-img")
	withImageStore(t, p)
	s := openWith(t, p, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := p.RunAgent(ctx, s, st, "")
	if err != nil || res.Stdout != "noted" {
		t.Fatalf("RunAgent: %q, %v\nreport %+v\nstderr: %s", res.Stdout, err, res.Agent, res.Stderr)
	}
	if b, err := s.ReadFile(ctx, "/workspace/note.txt"); err != nil || string(b) != "written by the agent\n" {
		t.Errorf("the Write call's file: %q, %v", b, err)
	}
	var out strings.Builder
	if _, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", "imagehello"}, Stdout: &out}); err != nil || out.String() != "hello from the image\n" {
		t.Errorf("the box's root is not its image: %q, %v", out.String(), err)
	}
}

// withImageStore gives p an image cache of its own.
func withImageStore(t *testing.T, p *Provider) {
	t.Helper()
	store, err := oci.Open(oci.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p.images = &images{store: store, pulled: map[string]*pulled{}}
}
