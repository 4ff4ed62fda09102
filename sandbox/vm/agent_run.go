package vm

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/voidbox/voidbox/agent/streamjson"
	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/runtime"
)

// Where claude-code runs in the guest: the stage user's home on the agent root disk
// (writable through the overlay), the project directory /workspace.
const (
	agentHome = "/home/voidbox"
	agentPath = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
)

// agentEnv is claude-code's environment: the provider behind the forwarded proxy port,
// a placeholder key (the proxy holds the real one), and no traffic beyond the model's.
func agentEnv(box map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range box {
		env[k] = v
	}
	for k, v := range map[string]string{
		"ANTHROPIC_BASE_URL": fmt.Sprintf("http://127.0.0.1:%d", llmGuestPort),
		"ANTHROPIC_API_KEY":  keyPlaceholder,
		"HOME":               agentHome,
		"PATH":               agentPath,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_TELEMETRY":                        "1",
		"DISABLE_AUTOUPDATER":                      "1",
		"DISABLE_ERROR_REPORTING":                  "1",
		// claude-code retries even a refused key ten times with backoff (minutes); two
		// retries still ride out a transient 5xx.
		"CLAUDE_CODE_MAX_RETRIES": "2",
	} {
		env[k] = v // the box cannot point the agent elsewhere or hand it a key
	}
	return env
}

// skillName keeps a file skill's directory name to what Claude Code accepts.
var skillName = regexp.MustCompile(`[^a-z0-9-]+`)

// skillFile is a file skill as Claude Code reads it: SKILL.md with name and
// description frontmatter (the file's own frontmatter is kept when it has one).
func skillFile(sk runtime.Skill) (dir, content string) {
	name := strings.Trim(skillName.ReplaceAllString(strings.ToLower(strings.TrimSuffix(path.Base(sk.Name), path.Ext(sk.Name))), "-"), "-")
	if name == "" {
		name = "skill"
	}
	if strings.HasPrefix(sk.Content, "---\n") {
		return name, sk.Content
	}
	desc := sk.Description
	if desc == "" {
		desc = "Instructions from " + sk.Name
	}
	desc = strings.ReplaceAll(desc, "\n", " ")
	return name, fmt.Sprintf("---\nname: %s\ndescription: %q\n---\n\n%s", name, desc, sk.Content)
}

// RunAgent implements runtime.AgentRunner: claude-code runs the stage's prompt as the
// stage user in /workspace, its stream-json output is parsed into the stage's agent
// report, and its result text is the stage's output.
func (p *Provider) RunAgent(ctx context.Context, sb runtime.Sandbox, st *runtime.Stage, input string) (runtime.AgentResult, error) {
	s, ok := sb.(*Sandbox)
	if !ok || s.agent == nil {
		return runtime.AgentResult{}, errNoAgent
	}
	n := 0
	for _, sk := range st.Skills {
		if sk.Kind != runtime.SkillFile {
			continue
		}
		dir, content := skillFile(sk)
		if n++; n > 1 {
			dir = fmt.Sprintf("%s-%d", dir, n)
		}
		if err := s.WriteFile(ctx, "/workspace/.claude/skills/"+dir+"/SKILL.md", []byte(content), 0o644); err != nil {
			return runtime.AgentResult{}, fmt.Errorf("skill %s: %w", sk.Name, err)
		}
	}
	env := agentEnv(st.Env)
	claude := []string{"claude"}
	if s.agent.mounted {
		// Beside an image: claude through its disk's loader (Debian's, merged /usr: the
		// files are real there, the /lib64 link is absolute and would point into the image).
		lib := agentMount + "/usr/lib/x86_64-linux-gnu"
		claude = []string{lib + "/ld-linux-x86-64.so.2", "--library-path", lib, agentMount + "/usr/local/bin/claude"}
		env["HOME"] = "/tmp"
		env["PATH"] = s.fs.imagePath() + ":" + agentMount + "/usr/bin:" + agentMount + "/bin"
	}
	skills := collectAgentSkills(st.Skills)
	if len(skills.path) > 0 {
		env["PATH"] = strings.Join(skills.path, ":") + ":" + env["PATH"]
	}
	extraArgs, extraPrompt, err := skills.prepare(ctx, s, env)
	if err != nil {
		return runtime.AgentResult{}, err
	}
	prompt := st.Prompt + "\n\nThe input of this stage is in the file /workspace/input." + extraPrompt
	args := append(append(claude, "-p", prompt, "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"), extraArgs...)
	if m := s.agent.llm.Model; m != "" {
		args = append(args, "--model", m)
	}
	// The stream-json events are parsed as they arrive (the parser bounds what it keeps);
	// stderr is claude-code's own log, capped like a command's.
	parser := streamjson.NewParser(streamjson.Options{OnToolCall: func(c streamjson.ToolCall) {
		runtime.ReportToolCall(ctx, runtime.ToolCall{Name: c.Name, Input: string(c.Input)})
	}})
	stderr := &capped{max: 1 << 20}
	req := runtime.ExecRequest{Args: args, Env: env, Dir: runtime.WorkDir, Stdout: parser, Stderr: stderr}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = max(time.Until(dl), time.Millisecond) // the guest ends claude-code itself
	}
	res, err := s.exec(ctx, req, false)
	out := runtime.AgentResult{Stderr: stderr.String(), ExitCode: res.ExitCode, Signal: res.Signal}
	if err != nil {
		return out, err
	}
	if res.TimedOut {
		return out, fmt.Errorf("claude-code was stopped at the stage's timeout: %w", context.DeadlineExceeded)
	}
	rep, perr := parser.Close()
	out.Agent = report(rep)
	out.Stdout = rep.Result
	if rep.IsError {
		out.Stdout = ""
		out.Agent.Result = rep.ErrorText()
		// The provider's own reply says more than claude-code's summary of it.
		if pe := s.agent.proxy.Stats().LastProviderError; pe != nil {
			out.Agent.Result += " (" + termsafe.Clean(pe.Error()) + ")"
		}
	}
	if perr != nil {
		return out, fmt.Errorf("claude-code's output: %w (exit %d)%s", perr, res.ExitCode, tail(out.Stderr))
	}
	return out, nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func report(r streamjson.Result) *runtime.AgentReport {
	a := &runtime.AgentReport{
		Result: r.Result, IsError: r.IsError, CostUSD: r.CostUSD, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens,
		Turns: r.Turns, DurationAPIMS: r.DurationAPIMS, Model: r.Model, SessionID: r.SessionID,
	}
	for _, c := range r.ToolCalls {
		a.ToolCalls = append(a.ToolCalls, runtime.ToolCall{Name: c.Name, Input: string(c.Input)})
	}
	return a
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 2048 {
		s = s[len(s)-2048:]
	}
	return "\n" + s
}
