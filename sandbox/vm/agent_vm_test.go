package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/anthropictest"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

const testKeyEnv = "VOIDBOX_TEST_KEY"

func agentProvider(t *testing.T, key string) *Provider {
	t.Helper()
	img := vmtest.Image(t)
	p, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs,
		Getenv: func(k string) string {
			if k == testKeyEnv {
				return key
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func agentSpec(name string, llm *runtime.LLM, skills ...runtime.Skill) (runtime.SandboxSpec, *runtime.Stage) {
	skills = append([]runtime.Skill{{Kind: runtime.SkillAgent, Name: "claude-code"}}, skills...)
	st := &runtime.Stage{Name: name, Prompt: "Count the lines of the input and write a report.", Skills: skills, LLM: llm, MemoryMB: 1024, VCPUs: 2}
	return runtime.SandboxSpec{Name: name, MemoryMB: 1024, VCPUs: 2, Agent: true, Skills: skills, LLM: llm}, st
}

// TestAgentStageInVM runs the real claude-code in a VM against a scripted Messages API
// on 127.0.0.1, reached through the credential proxy over the agent channel (the box
// has no network): its Bash and Write tool calls act in the guest and on an rw mount,
// its result and report come back, the key reaches the server and nothing in the guest.
func TestAgentStageInVM(t *testing.T) {
	vmtest.Require(t)
	var raw [16]byte
	rand.Read(raw[:])
	key := "sk-voidbox-test-" + hex.EncodeToString(raw[:])
	srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Bash("wc -l < /workspace/input > /workspace/count.txt && cat /workspace/count.txt")),
		anthropictest.Reply(anthropictest.Write("/out/report.md", "# Report\n3 lines\n")),
		anthropictest.Reply(anthropictest.Text("The input has 3 lines.")),
	}})
	out := t.TempDir()
	os.Chown(out, 1000, 1000) // the stage user's directory, as a user's own would be
	llm := &runtime.LLM{Provider: "custom", BaseURL: srv.URL, Model: "claude-test-1", APIKeyEnv: testKeyEnv}
	spec, st := agentSpec("think", llm, runtime.Skill{Kind: runtime.SkillFile, Name: "style.md",
		Content: "Answer in one sentence.", Description: "House style for voidbox reports"})
	spec.Mounts = []runtime.Mount{{Host: out, Guest: "/out", Mode: runtime.MountRW}}
	p := agentProvider(t, key)
	s := openWith(t, p, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.WriteFile(ctx, runtime.InputPath, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := p.RunAgent(ctx, s, st, "a\nb\nc\n")
	t.Logf("claude-code ran in %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("RunAgent: %v\nstderr: %s", err, res.Stderr)
	}
	if res.Stdout != "The input has 3 lines." || res.Agent == nil || res.Agent.IsError {
		t.Fatalf("result %q, report %+v", res.Stdout, res.Agent)
	}
	var names []string
	for _, c := range res.Agent.ToolCalls {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"Bash", "Write"}) || res.Agent.Turns < 3 || res.Agent.SessionID == "" {
		t.Errorf("report: tools %v, turns %d, session %q", names, res.Agent.Turns, res.Agent.SessionID)
	}
	if b, err := s.ReadFile(ctx, "/workspace/count.txt"); err != nil || strings.TrimSpace(string(b)) != "3" {
		t.Errorf("the Bash call's file in the guest: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "report.md")); err != nil || string(b) != "# Report\n3 lines\n" {
		t.Errorf("the Write call's file on the rw mount: %q, %v", b, err)
	}
	reqs := srv.MessageRequests()
	if len(reqs) != 3 {
		t.Fatalf("the server got %d message requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if got := r.Header.Get("x-api-key"); got != key {
			t.Errorf("request %d carried key %q, want the host's", i, got)
		}
	}
	if !strings.Contains(string(reqs[0].Body), "House style for voidbox reports") {
		t.Errorf("the file skill's description is not in what the model was sent")
	}
	// The key is nowhere in the guest: no process environment, no file a stage can read.
	var found strings.Builder
	_, err = s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c",
		"grep -rlsF -e '" + key + "' /proc/[0-9]*/environ /home /workspace /tmp /etc /run /usr/local 2>/dev/null; echo checked"},
		Stdout: &found, Stderr: &found})
	if err != nil || found.String() != "checked\n" {
		t.Errorf("the key was found in the guest (or the search failed: %v): %q", err, found.String())
	}
}

// TestAgentProviderRefusal: a provider that refuses the key, or fails, fails the stage
// with the provider's reason.
func TestAgentProviderRefusal(t *testing.T) {
	vmtest.Require(t)
	for _, tc := range []struct {
		status int
		typ    string
	}{{401, "authentication_error"}, {500, "api_error"}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			refuse := anthropictest.Error(tc.status, tc.typ, "scripted refusal")
			srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{refuse}, Then: &refuse})
			spec, st := agentSpec("refused", &runtime.LLM{Provider: "custom", BaseURL: srv.URL, APIKeyEnv: testKeyEnv})
			p := agentProvider(t, "sk-test")
			s := openWith(t, p, spec)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := p.RunAgent(ctx, s, st, "")
			if err != nil {
				t.Fatalf("RunAgent: %v", err)
			}
			want := fmt.Sprintf("provider answered %d %s: scripted refusal", tc.status, tc.typ)
			if res.Agent == nil || !res.Agent.IsError || !strings.Contains(res.Agent.Result, want) {
				t.Fatalf("report %+v, want is_error with %q", res.Agent, want)
			}
		})
	}
}

// TestAgentStageTimeout: an agent still working at the stage's timeout is stopped in
// the guest, and the VM stays usable (nothing of claude-code left running).
func TestAgentStageTimeout(t *testing.T) {
	vmtest.Require(t)
	srv := anthropictest.New(t, anthropictest.Script{Turns: []anthropictest.Turn{
		anthropictest.Reply(anthropictest.Bash("tail -f /dev/null")),
	}})
	spec, st := agentSpec("slow", &runtime.LLM{Provider: "custom", BaseURL: srv.URL, APIKeyEnv: testKeyEnv})
	p := agentProvider(t, "sk-test")
	s := openWith(t, p, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, err := p.RunAgent(ctx, s, st, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunAgent at the timeout: %v, want a deadline error", err)
	}
	if len(srv.MessageRequests()) == 0 {
		t.Fatal("claude-code never reached the model: the timeout proves nothing")
	}
	var out strings.Builder
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if _, err := s.Exec(ctx2, runtime.ExecRequest{Args: []string{"sh", "-c", "cat /proc/[0-9]*/comm | grep -c -e claude -e tail; true"}, Stdout: &out}); err != nil || strings.TrimSpace(out.String()) != "0" {
		t.Errorf("after the timeout: %q processes of claude-code or its tool still run (%v)", out.String(), err)
	}
}

// A missing key fails the stage before anything boots (fakeVMM fails the test if it does).
func TestAgentMissingKeyBeforeBoot(t *testing.T) {
	p, err := New(Options{VMM: fakeVMM{}, Kernel: "/dev/null", Initramfs: "/dev/null", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := agentSpec("nokey", nil)
	_, err = p.Open(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "box nokey: llm.claude needs its API key in $ANTHROPIC_API_KEY on the host") {
		t.Fatalf("err %v", err)
	}
}
