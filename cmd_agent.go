package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/voidbox/voidbox/agent/claudecode"
	"github.com/voidbox/voidbox/internal/termsafe"
)

const agentUsage = `Usage: voidbox agent install [--agent-version V] [--registry URL] [--root-disk]
       voidbox agent ls [--json]

Manage claude-code, the coding agent agent boxes (prompt=) run, cached under
~/.voidbox/agents/claude-code/VERSION.
install: download the npm package @anthropic-ai/claude-code-linux-x64 at
VERSION (default ` + claudecode.DefaultVersion + `, the version voidbox is tested with; "latest"
asks the registry) over the registry's HTTP API, check the tarball against
the sha512 integrity in the registry's metadata, keep its claude executable
and print its path. An installed version whose executable is intact is not
downloaded again. --root-disk also builds the version's root disk: Debian
bookworm minbase with claude, what agent boxes without image= boot on
(needs root and debootstrap).
ls: the installed versions, their sizes, whether their root disk is built.`

func runAgent(args []string, env *cliEnv) int {
	sub := map[string]func([]string, *cliEnv) int{"install": runAgentInstall, "ls": runAgentList}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(env.stdout, agentUsage)
		return exitOK
	}
	if len(args) == 0 || sub[args[0]] == nil {
		got := "none"
		if len(args) > 0 {
			got = fmt.Sprintf("%q", args[0])
		}
		fmt.Fprintf(env.stderr, "voidbox agent: want a subcommand: install or ls (got %s)\nRun 'voidbox agent --help' for usage.\n", got)
		return exitUsage
	}
	return sub[args[0]](args[1:], env)
}

// agentFail reports err for subcommand sub and picks the exit code: a
// version that is not one, or that the registry does not have, is bad usage.
func agentFail(env *cliEnv, sub string, err error) int {
	// Registry answers are quoted in errors: keep them from driving the terminal.
	fmt.Fprintf(env.stderr, "voidbox agent %s: %s\n", sub, termsafe.Clean(err.Error()))
	var unknown *claudecode.UnknownVersionError
	if isUsage(err) || errors.As(err, &unknown) {
		return exitUsage
	}
	return exitFailed
}

func runAgentInstall(args []string, env *cliEnv) int {
	fs := newFlagSet("agent install", "", "Install claude-code for agent boxes and print the path of its executable.", env)
	version := fs.String("agent-version", claudecode.DefaultVersion, `the claude-code version: MAJOR.MINOR.PATCH, or "latest" (the registry's latest)`)
	registry := fs.String("registry", claudecode.DefaultRegistry, "the npm registry to download from (https; plain http only to a loopback address)")
	rootDisk := fs.Bool("root-disk", false, "also build the version's root disk for agent boxes without image= (needs root and debootstrap)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return agentFail(env, "install", usageErrorf("takes no arguments, got %q (the version is --agent-version V)", fs.Args()))
	}
	if err := claudecode.CheckVersion(*version); err != nil {
		return agentFail(env, "install", usageError{fmt.Errorf("--agent-version: %w", err)})
	}
	if err := claudecode.CheckRegistry(*registry); err != nil {
		return agentFail(env, "install", usageError{fmt.Errorf("--registry: %w", err)})
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	// Progress only on a terminal, as image pull: off one, install prints the
	// executable's path and nothing else unless something is wrong.
	terminal := isTerminal(env.stderr)
	opts := claudecode.Options{Version: *version, Registry: *registry}
	view := &agentView{w: env.stderr}
	if terminal {
		opts.Progress = view.update
	}
	in, err := claudecode.Install(ctx, opts)
	view.finish() // on every path, before anything is printed below the bar
	if err != nil {
		return agentFail(env, "install", err)
	}
	if terminal {
		how := "downloaded"
		if in.FromCache {
			how = "already installed"
		}
		fmt.Fprintf(env.stderr, "claude-code %s: %s, %s\n", in.Version, how, humanSize(in.Size))
	}
	if *rootDisk {
		var log io.Writer
		if terminal {
			log = env.stderr
		}
		d, err := claudecode.RootDisk(ctx, in, claudecode.RootDiskOptions{Log: log})
		if err != nil {
			return agentFail(env, "install", err)
		}
		if terminal {
			fmt.Fprintf(env.stderr, "root disk %s, %s\n", d.Path, humanSize(d.Size))
		}
	}
	fmt.Fprintln(env.stdout, in.Path)
	return exitOK
}

// agentEntry is one line of agent ls --json.
type agentEntry struct {
	Version      string    `json:"version"`
	Path         string    `json:"path"`
	Size         int64     `json:"size"`
	Integrity    string    `json:"integrity,omitempty"`
	SHA256       string    `json:"sha256,omitempty"`
	Installed    time.Time `json:"installed,omitzero"`
	Problem      string    `json:"problem,omitempty"`
	RootDisk     string    `json:"root_disk,omitempty"`
	RootDiskSize int64     `json:"root_disk_size,omitempty"`
}

func runAgentList(args []string, env *cliEnv) int {
	fs := newFlagSet("agent ls", "", "List the installed claude-code versions.", env)
	asJSON := fs.Bool("json", false, "print the list as a JSON array (version, path, size, integrity, sha256, installed, problem, root_disk, root_disk_size)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return agentFail(env, "ls", usageErrorf("takes no arguments, got %q", fs.Args()))
	}
	list, err := claudecode.List("")
	if err != nil {
		return agentFail(env, "ls", err)
	}
	if *asJSON {
		out := []agentEntry{}
		for _, e := range list {
			out = append(out, agentEntry{Version: e.Version, Path: e.Path, Size: e.Size, Integrity: e.Integrity, SHA256: e.SHA256,
				Installed: e.Installed.Installed, Problem: e.Problem, RootDisk: e.RootDisk, RootDiskSize: e.RootDiskSize})
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return agentFail(env, "ls", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSIZE\tROOT DISK\tINSTALLED")
	for _, e := range list {
		if e.Problem != "" {
			fmt.Fprintf(tw, "%s\t-\t-\tincomplete (voidbox agent install --agent-version %s repairs it)\n", e.Version, e.Version)
			continue
		}
		disk := "not built"
		if e.RootDisk != "" {
			disk = "built, " + humanSize(e.RootDiskSize)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Version, humanSize(e.Size), disk, e.Installed.Installed.Local().Format("2006-01-02 15:04:05"))
	}
	if err := tw.Flush(); err != nil {
		return agentFail(env, "ls", err)
	}
	return exitOK
}

// agentView draws the tarball's download as one mpb bar on a terminal; it
// completes when the tarball matched its integrity.
type agentView struct {
	w        io.Writer
	progress *mpb.Progress
	bar      *mpb.Bar
}

// update takes one report (Install makes them from one goroutine).
func (v *agentView) update(p claudecode.Progress) {
	switch p.Status {
	case claudecode.StatusDownloading:
		if v.bar == nil {
			v.progress = mpb.New(mpb.WithOutput(v.w))
			v.bar = v.progress.New(0, mpb.BarStyle(),
				mpb.PrependDecorators(decor.Name("claude-code "+p.Version)),
				mpb.AppendDecorators(
					decor.Any(func(s decor.Statistics) string { return humanSize(s.Current) + " / " + humanSize(s.Total) }),
					decor.OnAbort(decor.OnComplete(decor.Name(""), " verified"), " stopped"),
				))
			v.bar.SetTotal(p.Total, false) // completed only by the integrity check
		}
		v.bar.SetCurrent(p.Done)
	case claudecode.StatusExtracting:
		if v.bar != nil {
			v.bar.SetTotal(-1, true)
		}
	}
}

// finish marks an incomplete bar stopped and draws the last frame, so
// nothing draws over what follows and no mpb goroutine outlives the install.
func (v *agentView) finish() {
	if v.progress == nil {
		return
	}
	v.bar.Abort(false) // no-op for a completed bar
	v.progress.Wait()
	v.progress, v.bar = nil, nil
}
