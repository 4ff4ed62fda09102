package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"

	"github.com/voidbox/voidbox/runtime"
)

// mcpConfigPath is the project's MCP configuration claude-code is pointed at.
const mcpConfigPath = "/workspace/.mcp.json"

// mcpServer is one entry of .mcp.json: a stdio server (command, args, env) or a
// remote one (type http, url).
type mcpServer struct {
	Type    string            `json:"type,omitempty"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	URL     string            `json:"url,omitempty"`
}

// agentSkills is how an agent box's skills reach claude-code besides file skills: MCP
// servers in .mcp.json, CLI tools named in the prompt, image skills' bin/ directories
// on PATH.
type agentSkills struct {
	mcp   map[string]mcpServer
	tools []string // cli: names, checked on PATH before the agent runs
	path  []string // directories put before the agent's PATH
}

func collectAgentSkills(skills []runtime.Skill) agentSkills {
	var a agentSkills
	name := func(base string) string {
		n := strings.Trim(skillName.ReplaceAllString(strings.ToLower(base), "-"), "-")
		if n == "" {
			n = "server"
		}
		for i := 2; ; i++ {
			if _, taken := a.mcp[n]; !taken {
				return n
			}
			n = fmt.Sprintf("%s-%d", strings.TrimRight(n, "-0123456789"), i)
		}
	}
	for _, sk := range skills {
		switch sk.Kind {
		case runtime.SkillMCP:
			if a.mcp == nil {
				a.mcp = map[string]mcpServer{}
			}
			a.mcp[name(path.Base(sk.Command))] = mcpServer{Command: sk.Command, Args: sk.Args, Env: sk.Env}
		case runtime.SkillRemote:
			if a.mcp == nil {
				a.mcp = map[string]mcpServer{}
			}
			u, _ := url.Parse(sk.URL)
			host := "remote"
			if u != nil {
				host = u.Hostname()
			}
			a.mcp[name(host)] = mcpServer{Type: "http", URL: sk.URL}
		case runtime.SkillCLI:
			a.tools = append(a.tools, sk.Name)
		case runtime.SkillImage:
			for _, d := range []string{"bin", "usr/local/bin", "usr/bin"} {
				a.path = append(a.path, path.Join(sk.MountPath, d))
			}
		}
	}
	return a
}

// remoteEgress are the egress entries that let a networked agent box reach its remote
// MCP servers (host:port of each URL). A remote skill on a box without network cannot
// be reached and is refused.
func remoteEgress(spec runtime.SandboxSpec) ([]string, error) {
	var out []string
	for _, sk := range spec.Skills {
		if sk.Kind != runtime.SkillRemote {
			continue
		}
		if !spec.Network {
			return nil, fmt.Errorf("skill remote:%s needs network = True (the box reaches the server through its egress policy)", sk.URL)
		}
		u, err := url.Parse(sk.URL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("skill remote:%s: not a URL with a host", sk.URL)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		out = append(out, net.JoinHostPort(u.Hostname(), port))
	}
	return out, nil
}

// prepare writes .mcp.json and checks that every CLI tool and stdio MCP command is on
// the stage's PATH, before claude-code starts: a missing one fails the stage naming it.
func (a agentSkills) prepare(ctx context.Context, s *Sandbox, env map[string]string) (args []string, prompt string, err error) {
	var missing []string
	check := func(prog string) error {
		var out strings.Builder
		res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", `command -v -- "$1"`, "sh", prog}, Env: env, Stdout: &out})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			missing = append(missing, prog)
		}
		return nil
	}
	for _, t := range a.tools {
		if err := check(t); err != nil {
			return nil, "", err
		}
	}
	for _, m := range a.mcp {
		if m.Command != "" {
			if err := check(m.Command); err != nil {
				return nil, "", err
			}
		}
	}
	if len(missing) > 0 {
		return nil, "", fmt.Errorf("%s not on the agent's PATH (%s): bring them in an image skill, a mount or the box's image", strings.Join(missing, ", "), env["PATH"])
	}
	if len(a.mcp) > 0 {
		js, err := json.MarshalIndent(map[string]any{"mcpServers": a.mcp}, "", "  ")
		if err != nil {
			return nil, "", err
		}
		if err := s.WriteFile(ctx, mcpConfigPath, js, 0o644); err != nil {
			return nil, "", fmt.Errorf("write %s: %w", mcpConfigPath, err)
		}
		args = []string{"--mcp-config", mcpConfigPath}
	}
	if len(a.tools) > 0 {
		prompt = "\n\nCommand-line tools available to you on PATH: " + strings.Join(a.tools, ", ") + "."
	}
	return args, prompt, nil
}
