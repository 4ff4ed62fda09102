package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/voidbox/voidbox/agent/claudecode"
	"github.com/voidbox/voidbox/agent/llmproxy"
	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/runtime"
)

// llmForward is the guest loopback port on which an agent box reaches its provider's
// credential proxy, forwarded over the agent channel: no network is needed, and
// nothing else is reachable through it.
const (
	llmForward     = "llm"
	llmGuestPort   = 4100
	llmSocket      = "llm.sock"
	claudeAgent    = "claude-code"
	keyPlaceholder = "voidbox-placeholder-key" // what the guest holds; the proxy replaces it
	agentDiskID    = "agent"
	agentMount     = "/opt/voidbox/agent" // claude-code's disk in a box with its own image
)

// agentBox is what an agent stage adds to its VM: claude-code's root disk (for a box
// without image=) and its provider's credential proxy, served on a unix socket in the
// state dir that only this VM's agent channel dials.
type agentBox struct {
	llm     runtime.LLM
	mounted bool // claude-code's disk is at agentMount beside the box's image
	proxy   *llmproxy.Proxy
	ln      net.Listener
	socket  string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

// provider is the box's LLM with its defaults: Anthropic's API with the key in
// ANTHROPIC_API_KEY unless the box names another.
func provider(l *runtime.LLM) runtime.LLM {
	if l == nil {
		return runtime.LLM{Provider: "claude", APIKeyEnv: "ANTHROPIC_API_KEY"}
	}
	return *l
}

// proxyConfig turns the box's LLM into the proxy's: where it forwards and with which
// key. A key the provider needs but the host does not have fails the stage here,
// before anything boots.
func (p *Provider) proxyConfig(l runtime.LLM) (llmproxy.Config, error) {
	cfg := llmproxy.Config{BaseURL: l.BaseURL, Log: p.opts.Network.Log}
	switch l.Provider {
	case "claude":
		if cfg.BaseURL == "" {
			cfg.BaseURL = p.opts.ClaudeBaseURL
		}
		if cfg.BaseURL == "" {
			cfg.BaseURL = "https://api.anthropic.com"
		}
	case "ollama":
		cfg.AuthStyle = llmproxy.AuthNone
	case "custom":
	default:
		return cfg, fmt.Errorf("llm provider %q is not one voidbox knows (claude, ollama, custom)", l.Provider)
	}
	if l.APIKeyEnv != "" {
		cfg.APIKey = p.getenv(l.APIKeyEnv)
		if cfg.APIKey == "" {
			return cfg, fmt.Errorf("llm.%s needs its API key in $%s on the host (it never enters the VM); set it, or use llm.ollama for a local model", l.Provider, l.APIKeyEnv)
		}
	} else if cfg.AuthStyle != llmproxy.AuthNone {
		cfg.AuthStyle = llmproxy.AuthNone
	}
	return cfg, nil
}

func (p *Provider) getenv(k string) string {
	if p.opts.Getenv != nil {
		return p.opts.Getenv(k)
	}
	return os.Getenv(k)
}

// openAgent prepares an agent stage before its VM boots: claude-code installed (from
// the cache when it is there), its root disk for a box without image=, and the
// provider's proxy listening on the state dir's socket. It fills fs.
func (p *Provider) openAgent(ctx context.Context, spec runtime.SandboxSpec, stateDir string, fs *boxFS) (*agentBox, error) {
	if !spec.Agent {
		return nil, nil
	}
	var kind string
	for _, sk := range spec.Skills {
		if sk.Kind == runtime.SkillAgent {
			kind = sk.Name
		}
	}
	if kind != claudeAgent {
		return nil, fmt.Errorf("agent %q is %w (agent boxes run %s)", kind, runtime.ErrUnsupported, claudeAgent)
	}
	llm := provider(spec.LLM)
	pcfg, err := p.proxyConfig(llm)
	if err != nil {
		return nil, err
	}
	in, err := claudecode.Install(ctx, claudecode.Options{Version: p.opts.AgentVersion, CacheDir: p.opts.AgentCache})
	if err != nil {
		return nil, fmt.Errorf("install %s: %w", claudeAgent, err)
	}
	disk, err := claudecode.RootDisk(ctx, in, claudecode.RootDiskOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s root disk: %w", claudeAgent, err)
	}
	a := &agentBox{llm: llm, socket: filepath.Join(stateDir, llmSocket)}
	if spec.Image == "" {
		fs.root = rootDiskID
		fs.disks = append([]runtime.Disk{{ID: rootDiskID, Path: disk.Path, ReadOnly: true}}, fs.disks...)
	} else {
		// The box's image is the root; claude-code's disk is mounted beside it and claude
		// runs through that disk's own loader and libraries (the image needs no glibc).
		fs.disks = append(fs.disks, runtime.Disk{ID: agentDiskID, Path: disk.Path, ReadOnly: true})
		fs.mounts = append(fs.mounts, proto.Mount{Kind: proto.MountDisk, Source: agentDiskID, Path: agentMount, ReadOnly: true})
		a.mounted = true
	}
	proxy, err := llmproxy.New(pcfg)
	if err != nil {
		return nil, fmt.Errorf("llm proxy: %w", err)
	}
	a.proxy = proxy
	if a.ln, err = net.Listen("unix", a.socket); err != nil {
		return nil, fmt.Errorf("llm proxy: %w", err)
	}
	var sctx context.Context
	sctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = proxy.Serve(sctx, a.ln)
	}()
	return a, nil
}

// serve carries the guest's connections to the proxy until the session ends.
func (a *agentBox) serve(client *proto.Client) {
	if a == nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		var d net.Dialer
		_ = client.ServeForwards(context.Background(), map[string]proto.Dialer{
			llmForward: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", a.socket) },
		})
	}()
}

// close stops the proxy; the forwards end with the session.
func (a *agentBox) close() {
	if a == nil {
		return
	}
	a.once.Do(func() {
		a.cancel()
		a.ln.Close()
		a.wg.Wait()
		os.Remove(a.socket)
	})
}

// errNoAgent is returned by RunAgent for a sandbox that was not opened for an agent.
var errNoAgent = errors.New("the sandbox was not opened for an agent stage")
