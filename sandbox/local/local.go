// Package local is the no-isolation sandbox: each stage attempt runs as a host process
// group in a private temp directory that stands for /workspace. It exists to develop
// pipeline logic fast (`--sandbox local`), is only used when asked for, and warns once.
// It owns that temp dir and those processes: Close kills what is left and removes the dir.
//
// What "no isolation" means here: processes see the host file system, network and
// users. Mounts are refused (there is no way to place a host directory at a guest path
// without namespaces), and so are network = True (an egress policy cannot be enforced
// on host processes) and image= (there is no root file system to swap); a box without
// network still has the host's network. The command allowlist (allow=)
// is enforced on argv[0]. Because commands do not run where /workspace exists, every
// "/workspace" path in argv, in environment values and in Dir is rewritten to the temp
// dir, and VOIDBOX_WORKSPACE names it.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/voidbox/voidbox/runtime"
)

// Warning is printed once per Provider, when its first sandbox opens.
const Warning = "voidbox: warning: --sandbox local runs stages as host processes with no isolation"

// Workspace is the guest path that the sandbox's temp dir stands for.
const Workspace = "/workspace"

// Provider opens local sandboxes.
type Provider struct {
	// BaseDir is where per-sandbox temp dirs are made; "" means os.TempDir().
	BaseDir string

	warn     io.Writer
	warnOnce sync.Once
}

// New returns a provider that writes its one-line warning to warn (nil: no warning).
func New(warn io.Writer) *Provider { return &Provider{warn: warn} }

// Name implements runtime.Provider.
func (p *Provider) Name() string { return "local" }

// Open implements runtime.Provider: it makes the sandbox's temp dir.
func (p *Provider) Open(ctx context.Context, spec runtime.SandboxSpec) (runtime.Sandbox, error) {
	if len(spec.Mounts) > 0 {
		m := spec.Mounts[0]
		return nil, fmt.Errorf("box %s: mount %s -> %s: the local sandbox does not support mounts (%w); read the host path directly", spec.Name, m.Host, m.Guest, runtime.ErrUnsupported)
	}
	if len(spec.Skills) > 0 {
		return nil, fmt.Errorf("box %s: skills are %w yet (they are validated, but nothing binds them to a stage); remove skills=", spec.Name, runtime.ErrUnsupported)
	}
	if spec.Network {
		return nil, fmt.Errorf("box %s: network = True: the local sandbox cannot enforce an egress policy on host processes (%w); run it with --sandbox vm", spec.Name, runtime.ErrUnsupported)
	}
	if spec.Image != "" {
		return nil, fmt.Errorf("box %s: image = %q: the local sandbox runs host processes and has no root file system to replace (%w); run it with --sandbox vm", spec.Name, spec.Image, runtime.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("box %s: open local sandbox: %w", spec.Name, err)
	}
	p.warnOnce.Do(func() {
		if p.warn != nil {
			fmt.Fprintln(p.warn, Warning)
		}
	})
	dir, err := os.MkdirTemp(p.BaseDir, "voidbox-local-")
	if err != nil {
		return nil, fmt.Errorf("box %s: workspace dir: %w", spec.Name, err)
	}
	// Resolve symlinks (e.g. a symlinked TMPDIR) so the rewritten paths are canonical.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("box %s: workspace dir: %w", spec.Name, err)
	}
	return &Sandbox{name: spec.Name, dir: dir, root: root, allow: spec.Allow, groups: map[int]bool{}}, nil
}

// Sandbox is one stage attempt's temp dir and the process groups started in it.
type Sandbox struct {
	name  string
	dir   string
	root  *os.Root // confines file calls to dir, symlinks included
	allow []string

	mu     sync.Mutex
	groups map[int]bool // process group ids still to kill on Close
	closed bool
}

// Dir is the host directory that stands for /workspace.
func (s *Sandbox) Dir() string { return s.dir }

// rel maps a guest path under /workspace to a path relative to the workspace root.
// It refuses anything else, and ".." elements even when they would stay inside, so a
// confused caller finds out rather than writing somewhere unexpected.
func (s *Sandbox) rel(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute; want a path under %s", p, Workspace)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("path %q contains \"..\"; want a path under %s without \"..\"", p, Workspace)
		}
	}
	c := path.Clean(p)
	if c == Workspace {
		return ".", nil
	}
	if !strings.HasPrefix(c, Workspace+"/") {
		return "", fmt.Errorf("path %q is outside %s; the local sandbox only maps %s", p, Workspace, Workspace)
	}
	return strings.TrimPrefix(c, Workspace+"/"), nil
}

// WriteFile implements runtime.Sandbox, creating parent directories as needed.
func (s *Sandbox) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	rel, err := s.rel(p)
	if err != nil {
		return fmt.Errorf("local sandbox %s: write: %w", s.name, err)
	}
	if rel == "." {
		return fmt.Errorf("local sandbox %s: write %s: it is the workspace directory, not a file", s.name, p)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("local sandbox %s: write %s: %w", s.name, p, err)
		}
	}
	if err := s.root.WriteFile(rel, data, mode.Perm()); err != nil {
		return fmt.Errorf("local sandbox %s: write %s: %w", s.name, p, err)
	}
	// WriteFile keeps the mode of an existing file; the caller asked for mode.
	if err := s.root.Chmod(rel, mode.Perm()); err != nil {
		return fmt.Errorf("local sandbox %s: write %s: %w", s.name, p, err)
	}
	return nil
}

// ReadFile implements runtime.Sandbox.
func (s *Sandbox) ReadFile(ctx context.Context, p string) ([]byte, error) {
	rel, err := s.rel(p)
	if err != nil {
		return nil, fmt.Errorf("local sandbox %s: read: %w", s.name, err)
	}
	b, err := s.root.ReadFile(rel)
	if err != nil {
		return nil, fmt.Errorf("local sandbox %s: read %s: %w", s.name, p, err)
	}
	return b, nil
}

// Close implements runtime.Sandbox: it kills every process group still alive and
// removes the workspace. Closing twice is harmless.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	groups := s.groups
	s.groups = nil
	s.mu.Unlock()
	for pgid := range groups {
		killGroup(pgid)
	}
	var errs []error
	if err := s.root.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local sandbox %s: close: %w", s.name, err)
	}
	return nil
}

// track registers a running process group; it fails once the sandbox is closed so no
// process outlives Close.
func (s *Sandbox) track(pgid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.groups[pgid] = true
	return true
}

func (s *Sandbox) untrack(pgid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, pgid)
}

func killGroup(pgid int) {
	// ESRCH (already gone) is the common, harmless case.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// rewrite replaces each "/workspace" path in s (at a path boundary: not inside a longer
// name like "/workspaces" or "/x/workspace") with the sandbox dir.
func rewrite(s, dir string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, Workspace)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(Workspace)
		before := i == 0 || !isPathChar(s[i-1])
		after := end == len(s) || s[end] == '/' || !isPathChar(s[end])
		b.WriteString(s[:i])
		if before && after {
			b.WriteString(dir)
		} else {
			b.WriteString(Workspace)
		}
		s = s[end:]
	}
}

func isPathChar(c byte) bool {
	return c == '/' || c == '.' || c == '-' || c == '_' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
