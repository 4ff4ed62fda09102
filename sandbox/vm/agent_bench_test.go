package vm

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/anthropictest"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// BenchmarkAgent times claude-code in a VM (TCG here) against a scripted Messages API
// on 127.0.0.1, beside a command on the same box in the same run:
//
//	go test -run '^$' -bench Agent -benchtime 3x ./sandbox/vm
//
// box-start: an agent box's cold boot to its first exec (`true`); true: one exec on a
// booted agent box (the baseline); version: `claude --version`; one-turn: a whole
// agent run whose model answers at once with text (claude-code's start-up, one
// request through the proxy and the forward, the result).
func BenchmarkAgent(b *testing.B) {
	vmtest.Require(b)
	turn := anthropictest.Reply(anthropictest.Text("ok"))
	srv := anthropictest.New(b, anthropictest.Script{Then: &turn})
	llm := &runtime.LLM{Provider: "custom", BaseURL: srv.URL, APIKeyEnv: testKeyEnv}
	img := vmtest.Image(b)
	p, err := New(Options{VMM: vmtest.TCG(b), Kernel: img.Kernel, Initramfs: img.Initramfs, Getenv: func(string) string { return "sk-bench" }})
	if err != nil {
		b.Fatal(err)
	}
	spec, st := agentSpec("bench", llm)
	open := func() *Sandbox {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		sb, err := p.Open(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		return sb.(*Sandbox)
	}
	exec := func(s *Sandbox, args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := s.Exec(ctx, runtime.ExecRequest{Args: args, Env: map[string]string{"PATH": agentPath, "HOME": agentHome}, Stdout: io.Discard, Stderr: io.Discard})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("%v: exit %d, %v", args, res.ExitCode, err)
		}
	}
	b.Run("box-start", func(b *testing.B) {
		for range b.N {
			s := open()
			exec(s, "true")
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
	s := open()
	defer s.Close()
	b.Run("true", func(b *testing.B) {
		for range b.N {
			exec(s, "true")
		}
	})
	b.Run("version", func(b *testing.B) {
		for range b.N {
			exec(s, "claude", "--version")
		}
	})
	b.Run("one-turn", func(b *testing.B) {
		for range b.N {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			res, err := p.RunAgent(ctx, s, st, "")
			cancel()
			if err != nil || res.Stdout != "ok" {
				b.Fatalf("agent run: %q, %v", res.Stdout, err)
			}
		}
	})
}
