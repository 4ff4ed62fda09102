package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/chzyer/readline"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/voidbox/voidbox/internal/termsafe"
	"github.com/voidbox/voidbox/oci"
)

// imageTransport is the HTTP transport image commands reach registries with;
// nil is go-containerregistry's default. Tests point registry names that are
// not loopback at their in-process registry with it.
var imageTransport http.RoundTripper

const imageUsage = `Usage: voidbox image pull [--insecure-registry HOST]... REF
       voidbox image ls [--json]
       voidbox image rm REF|DIGEST...
       voidbox image prune

Manage the OCI image cache (~/.voidbox/oci) that box(image = ...) runs from.
pull: fetch REF (linux/amd64 from a multi-platform index) with the credentials of
the Docker config and its helpers; print REPOSITORY@DIGEST. Plain HTTP only for
loopback registries and those named with --insecure-registry.
ls: the cached references, their digests, sizes and when they were pulled.
rm: forget references (a digest forgets every reference to that image) and
delete what no other reference needs.
prune: delete what no cached reference needs.`

func runImage(args []string, env *cliEnv) int {
	sub := map[string]func([]string, *cliEnv) int{
		"pull": runImagePull, "ls": runImageList, "rm": runImageRemove, "prune": runImagePrune,
	}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(env.stdout, imageUsage)
		return exitOK
	}
	if len(args) == 0 || sub[args[0]] == nil {
		got := "none"
		if len(args) > 0 {
			got = fmt.Sprintf("%q", args[0])
		}
		fmt.Fprintf(env.stderr, "voidbox image: want a subcommand: pull, ls, rm or prune (got %s)\nRun 'voidbox image --help' for usage.\n", got)
		return exitUsage
	}
	return sub[args[0]](args[1:], env)
}

// imageFail reports err for subcommand sub and picks the exit code: a
// reference that does not parse is bad usage.
func imageFail(env *cliEnv, sub string, err error) int {
	// oci's messages start "oci: pull REF: ..."; the command's name says that.
	msg := strings.TrimPrefix(err.Error(), "oci: ")
	for _, op := range []string{"pull: ", "remove: ", "pull ", "remove "} {
		if m, ok := strings.CutPrefix(msg, op); ok {
			msg = m
			break
		}
	}
	// Registry answers are quoted in errors: keep them from driving the terminal.
	fmt.Fprintf(env.stderr, "voidbox image %s: %s\n", sub, termsafe.Clean(msg))
	if errors.Is(err, oci.ErrBadReference) || isUsage(err) {
		return exitUsage
	}
	return exitFailed
}

func openImageStore(insecure []string) (*oci.Store, error) {
	return oci.Open(oci.Options{Insecure: insecure, Transport: imageTransport})
}

func runImagePull(args []string, env *cliEnv) int {
	fs := newFlagSet("image pull", "REF", "Pull an image into the cache and print REPOSITORY@DIGEST.", env)
	insecure := fs.StringArray("insecure-registry", nil, "a registry (host or host:port, as in the reference) that may be reached over plain HTTP; repeatable")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return imageFail(env, "pull", usageErrorf("want one image reference, got %d arguments (voidbox image pull REF)", fs.NArg()))
	}
	ref := fs.Arg(0)
	s, err := openImageStore(*insecure)
	if err != nil {
		return imageFail(env, "pull", err)
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	// Progress only on a terminal: off one (a log, a pipe, CI) a pull prints
	// its reference on stdout and nothing else unless something is wrong.
	terminal := isTerminal(env.stderr)
	var opts oci.PullOptions
	view := newPullView(env.stderr)
	if terminal {
		opts.Progress = view.update
	}
	img, err := s.Pull(ctx, ref, opts)
	view.finish() // on every path, before anything else is printed below the bars
	if err != nil {
		return imageFail(env, "pull", err)
	}
	if img.Warning != "" {
		fmt.Fprintf(env.stderr, "voidbox image pull: warning: %s\n", termsafe.Clean(img.Warning))
	}
	if terminal {
		fmt.Fprintln(env.stderr, pullSummary(img))
	}
	fmt.Fprintln(env.stdout, pinned(img))
	return exitOK
}

// pullSummary is the line under the bars: "REF: downloaded, 2 layers, 3.1 MiB".
func pullSummary(img *oci.Image) string {
	how := "downloaded"
	if img.FromCache {
		how = "already cached"
	}
	layers := "layers"
	if len(img.Layers) == 1 {
		layers = "layer"
	}
	return fmt.Sprintf("%s: %s, %d %s, %s", img.Ref, how, len(img.Layers), layers, humanSize(img.Size))
}

// pinned is the image's repository at its digest: a reference that names
// exactly what was pulled.
func pinned(img *oci.Image) string {
	r, err := name.ParseReference(img.Ref)
	if err != nil { // Pull returned it, so it parses; keep the digest anyway
		return img.Ref + "@" + img.Digest
	}
	return r.Context().Name() + "@" + img.Digest
}

func runImageList(args []string, env *cliEnv) int {
	fs := newFlagSet("image ls", "", "List the cached images.", env)
	asJSON := fs.Bool("json", false, "print the list as a JSON array (ref, digest, index, resolved, size, disk)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return imageFail(env, "ls", usageErrorf("takes no arguments, got %q", fs.Args()))
	}
	s, err := openImageStore(nil)
	if err != nil {
		return imageFail(env, "ls", err)
	}
	list, err := s.List()
	if err != nil {
		return imageFail(env, "ls", err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return imageFail(env, "ls", err)
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tDIGEST\tSIZE\tPULLED")
	for _, e := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Ref, e.Digest, humanSize(e.Size), e.Resolved.Local().Format("2006-01-02 15:04:05"))
	}
	if err := tw.Flush(); err != nil {
		return imageFail(env, "ls", err)
	}
	return exitOK
}

func runImageRemove(args []string, env *cliEnv) int {
	fs := newFlagSet("image rm", "REF|DIGEST...", "Forget cached references and delete what no other reference needs.", env)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		return imageFail(env, "rm", usageErrorf("want at least one image reference or digest (voidbox image ls lists them)"))
	}
	s, err := openImageStore(nil)
	if err != nil {
		return imageFail(env, "rm", err)
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	// Like rm: every argument is tried; the exit code is the worst outcome.
	code := exitOK
	for _, ref := range fs.Args() {
		rep, err := s.Remove(ctx, ref)
		if err != nil {
			code = max(code, imageFail(env, "rm", err))
			continue
		}
		for _, r := range rep.Refs {
			fmt.Fprintf(env.stdout, "removed %s\n", r)
		}
		printFreed(env.stderr, rep)
	}
	return code
}

func runImagePrune(args []string, env *cliEnv) int {
	fs := newFlagSet("image prune", "", "Delete cached blobs and disks no cached reference needs, and leftovers of interrupted pulls.", env)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return imageFail(env, "prune", usageErrorf("takes no arguments, got %q", fs.Args()))
	}
	s, err := openImageStore(nil)
	if err != nil {
		return imageFail(env, "prune", err)
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	rep, err := s.Prune(ctx)
	if err != nil {
		return imageFail(env, "prune", err)
	}
	printFreed(env.stdout, rep)
	return exitOK
}

func printFreed(w io.Writer, rep *oci.PruneReport) {
	fmt.Fprintf(w, "deleted %d blobs and %d disks, %s freed\n", rep.Blobs, rep.Disks, humanSize(rep.Bytes))
}

// humanSize prints a byte count in binary units, one decimal past KiB.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

// isTerminal says whether w is a terminal (progress bars are drawn there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && readline.IsTerminal(int(f.Fd()))
}

// pullView shows a pull's layer progress on w, a terminal: a bar per layer,
// drawn by mpb (redrawn in place, throttled, kept in layer order, sized to the
// terminal). Off a terminal pulls are quiet and pass no view.
type pullView struct {
	w        io.Writer
	progress *mpb.Progress // from the first report until finish
	bars     []*mpb.Bar    // by layer index; nil until the layer's first report
}

func newPullView(w io.Writer) *pullView {
	return &pullView{w: w}
}

// update takes one report (oci serializes them).
func (v *pullView) update(p oci.Progress) {
	if p.Index < 0 || p.Index >= p.Count {
		return
	}
	if v.progress == nil {
		v.progress = mpb.New(mpb.WithOutput(v.w))
		v.bars = make([]*mpb.Bar, p.Count)
	}
	if len(v.bars) != p.Count { // one pull, one layer count
		return
	}
	b := v.bars[p.Index]
	if b == nil {
		b = v.addBar(p)
		v.bars[p.Index] = b
	}
	if p.Status == oci.StatusDownloading {
		b.SetCurrent(p.Done)
		return
	}
	b.SetTotal(p.Total, true) // cached or downloaded and verified: complete
}

// addBar adds layer p's bar, in layer order. It is created with no total so
// that reaching the layer's size does not complete it: only the report that
// the layer is verified (or cached) does.
func (v *pullView) addBar(p oci.Progress) *mpb.Bar {
	b := v.progress.New(0, mpb.BarStyle(), mpb.BarPriority(p.Index),
		mpb.PrependDecorators(decor.Name(layerLabel(p), decor.WCSyncWidthR)),
		mpb.AppendDecorators(
			// humanSize, like the summary and image ls: "1.5 KiB / 3.0 MiB".
			decor.Any(func(s decor.Statistics) string { return humanSize(s.Current) + " / " + humanSize(s.Total) }, decor.WCSyncWidthR),
			decor.OnAbort(decor.OnComplete(decor.Name("", decor.WCSyncWidthR), " "+statusWord(p.Status)), " stopped"),
		))
	b.SetTotal(p.Total, false)
	return b
}

// finish ends the view: bars of layers that did not complete (an error, a
// cancelled pull) are marked stopped, and the last frame is drawn before it
// returns, so nothing draws over what the command prints next and no mpb
// goroutine outlives the pull.
func (v *pullView) finish() {
	if v.progress == nil {
		return
	}
	for _, b := range v.bars {
		if b != nil {
			b.Abort(false) // no-op for a completed bar; keeps the stopped one on screen
		}
	}
	v.progress.Wait()
	v.progress, v.bars = nil, nil
}

// layerLabel is "layer 2/3 sha256:0123456789ab".
func layerLabel(p oci.Progress) string {
	return fmt.Sprintf("layer %d/%d %s", p.Index+1, p.Count, shortDigest(p.Layer))
}

// statusWord is what became of a layer that is no longer downloading; a layer
// first reported downloading ends downloaded.
func statusWord(s oci.Status) string {
	if s == oci.StatusCached {
		return "cached"
	}
	return "downloaded"
}

// shortDigest is "sha256:" and the first 12 hex digits.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
