package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	ot "github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/oci"
)

// imageEnv gives the image commands a cache of their own (under $HOME) and
// a Docker config without credentials.
func imageEnv(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	return home
}

// pushImage pushes a one-layer image holding a file with body under ref.
func pushImage(t *testing.T, ref, body string) string {
	t.Helper()
	layer := ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", body)), false)
	return ot.Push(t, ref, ot.NewImage(t, v1.Config{Cmd: []string{"cat", "/etc/motd"}}, "amd64", layer))
}

func TestImagePullListRemove(t *testing.T) {
	home := imageEnv(t)
	reg := ot.NewRegistry(t, nil)
	ref := reg.Ref("app:v1")
	digest := pushImage(t, ref, "hello\n")

	r := voidbox(t, "image", "pull", ref)
	if r.code != exitOK || r.stdout != reg.Ref("app")+"@"+digest+"\n" {
		t.Fatalf("pull: code %d stdout %q stderr %q; want 0 and the pinned reference", r.code, r.stdout, r.stderr)
	}
	// stderr is not a terminal here: no progress, no summary.
	if r.stderr != "" {
		t.Errorf("pull on a non-terminal printed on stderr:\n%q\nwant nothing (progress is for terminals)", r.stderr)
	}
	if _, err := os.Stat(home + "/.voidbox/oci/refs.json"); err != nil {
		t.Errorf("the cache is not in ~/.voidbox/oci: %v", err)
	}
	if r := voidbox(t, "image", "pull", ref); r.code != exitOK || r.stdout != reg.Ref("app")+"@"+digest+"\n" || r.stderr != "" {
		t.Errorf("second pull: code %d stdout %q stderr %q; want 0, the pinned reference and nothing on stderr", r.code, r.stdout, r.stderr)
	}

	r = voidbox(t, "image", "ls")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 2 || !strings.HasPrefix(lines[0], "REF") ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(ref)+` +`+digest+` +\d+ B +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(lines[1]) {
		t.Fatalf("ls: code %d\n%s\nwant a header and REF DIGEST SIZE PULLED for %s", r.code, r.stdout, ref)
	}
	r = voidbox(t, "image", "ls", "--json")
	var entries []oci.Entry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 || entries[0].Ref != ref ||
		entries[0].Digest != digest || entries[0].Size <= 0 || time.Since(entries[0].Resolved) > time.Minute {
		t.Fatalf("ls --json: %v %+v\n%s", err, entries, r.stdout)
	}

	r = voidbox(t, "image", "rm", ref)
	if r.code != exitOK || r.stdout != "removed "+ref+"\n" || !strings.Contains(r.stderr, "deleted 3 blobs") {
		t.Fatalf("rm: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := voidbox(t, "image", "ls"); r.code != exitOK || strings.TrimSpace(r.stdout) != "REF  DIGEST  SIZE  PULLED" {
		t.Fatalf("ls after rm: code %d\n%s", r.code, r.stdout)
	}
	if r := voidbox(t, "image", "rm", ref); r.code != exitFailed || !strings.Contains(r.stderr, ref+": no such image in the cache") {
		t.Errorf("rm of an image no longer cached: code %d stderr %q", r.code, r.stderr)
	}
}

// rm by digest forgets every reference to the image; prune deletes what a
// moved tag left behind and nothing a reference still needs.
func TestImageRemoveByDigestAndPrune(t *testing.T) {
	imageEnv(t)
	reg := ot.NewRegistry(t, nil)
	d1 := pushImage(t, reg.Ref("app:v1"), "one\n")
	pushImage(t, reg.Ref("app:stable"), "one\n")
	for _, tag := range []string{"app:v1", "app:stable"} {
		if r := voidbox(t, "image", "pull", reg.Ref(tag)); r.code != exitOK {
			t.Fatalf("pull %s: %s", tag, r.stderr)
		}
	}
	r := voidbox(t, "image", "rm", d1)
	if r.code != exitOK || r.stdout != "removed "+reg.Ref("app:stable")+"\nremoved "+reg.Ref("app:v1")+"\n" {
		t.Fatalf("rm by digest: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	pushImage(t, reg.Ref("app:v1"), "one\n")
	if r := voidbox(t, "image", "pull", reg.Ref("app:v1")); r.code != exitOK {
		t.Fatalf("pull: %s", r.stderr)
	}
	if r := voidbox(t, "image", "prune"); r.code != exitOK || r.stdout != "deleted 0 blobs and 0 disks, 0 B freed\n" {
		t.Fatalf("prune with nothing to prune: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	d2 := pushImage(t, reg.Ref("app:v1"), "two\n") // the tag moves
	if r := voidbox(t, "image", "pull", reg.Ref("app:v1")); r.code != exitOK {
		t.Fatalf("pull of the moved tag: %s", r.stderr)
	}
	r = voidbox(t, "image", "prune")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "deleted 3 blobs and 0 disks, ") {
		t.Fatalf("prune after a tag moved: code %d stdout %q stderr %q; want the old manifest, config and layer deleted", r.code, r.stdout, r.stderr)
	}
	if r := voidbox(t, "image", "ls"); !strings.Contains(r.stdout, d2) {
		t.Errorf("prune dropped the image the tag names now:\n%s", r.stdout)
	}
}

func TestImageUsageErrors(t *testing.T) {
	imageEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"image"}, "want a subcommand: pull, ls, rm or prune (got none)"},
		{[]string{"image", "frob"}, `(got "frob")`},
		{[]string{"image", "pull"}, "want one image reference, got 0 arguments"},
		{[]string{"image", "pull", "Bad//Ref"}, `voidbox image pull: image reference "Bad//Ref" is not valid; want [registry[:port]/]path`},
		{[]string{"image", "pull", "--insecure-registry", "bad host", "x"}, `insecure registry "bad host" is not valid`},
		{[]string{"image", "pull", "--nope", "x"}, "unknown flag: --nope"},
		{[]string{"image", "rm"}, "want at least one image reference or digest"},
		{[]string{"image", "rm", "Bad//Ref"}, `voidbox image rm: image reference "Bad//Ref" is not valid`},
		{[]string{"image", "rm", "sha256:abc"}, `image digest "sha256:abc" is not valid; want sha256: and 64 lower-case hex digits`},
		{[]string{"image", "ls", "x"}, `voidbox image ls: takes no arguments, got ["x"]`},
		{[]string{"image", "prune", "x"}, `voidbox image prune: takes no arguments`},
	} {
		r := voidbox(t, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("voidbox %s: code %d stderr %q; want %d and %q", strings.Join(c.args, " "), r.code, r.stderr, exitUsage, c.want)
		}
	}
	if r := voidbox(t, "image", "--help"); r.code != exitOK || !strings.Contains(r.stdout, "voidbox image pull [--insecure-registry HOST]... REF") {
		t.Errorf("image --help: code %d stdout %q", r.code, r.stdout)
	}
}

// A registry that speaks plain HTTP under a name that is not loopback is
// refused until --insecure-registry names it.
func TestImagePullInsecureRegistry(t *testing.T) {
	imageEnv(t)
	reg := ot.NewRegistry(t, nil)
	pushImage(t, reg.Ref("app:v1"), "hello\n")
	imageTransport = reg.Redirect()
	t.Cleanup(func() { imageTransport = nil })
	ref := "registry.test:5000/app:v1"
	r := voidbox(t, "image", "pull", ref)
	want := "voidbox image pull: " + ref + ": registry registry.test:5000 answers in plain HTTP, not HTTPS; voidbox pulls over HTTP only from loopback registries and from those named with --insecure-registry registry.test:5000"
	if r.code != exitFailed || !strings.Contains(r.stderr, want) {
		t.Fatalf("pull without --insecure-registry: code %d stderr %q; want %d and %q", r.code, r.stderr, exitFailed, want)
	}
	r = voidbox(t, "image", "pull", "--insecure-registry", "registry.test:5000", ref)
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "registry.test:5000/app@sha256:") {
		t.Fatalf("pull with --insecure-registry: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// What a registry says in an error reaches the terminal without its escape
// sequences.
func TestImagePullErrorIsTerminalSafe(t *testing.T) {
	imageEnv(t)
	reg := ot.NewRegistry(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"gone\u001b]0;owned\u0007\u001b[2J"}]}`)
		})
	})
	r := voidbox(t, "image", "pull", reg.Ref("app:v9"))
	if r.code != exitFailed || !strings.Contains(r.stderr, `tag "v9" not found`) || !strings.Contains(r.stderr, "MANIFEST_UNKNOWN") || strings.ContainsAny(r.stderr, "\x1b\x07") {
		t.Fatalf("code %d stderr %q; want the error without escape sequences", r.code, r.stderr)
	}
}

// voidboxOnTerminal runs voidbox with stderr on a pseudo-terminal (80x24) and
// returns, as stderr, everything the terminal received.
func voidboxOnTerminal(t *testing.T, args ...string) cliResult {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	screen := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO once the terminal is closed and drained
		screen <- string(b)
	}()
	var out bytes.Buffer
	code := runMain(args, &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: tty})
	tty.Close()
	select {
	case s := <-screen:
		return cliResult{code, out.String(), s}
	case <-time.After(10 * time.Second):
		t.Fatalf("voidbox %s: the terminal's output did not end 10s after the command returned", strings.Join(args, " "))
		return cliResult{}
	}
}

// noProgressGoroutines fails t if an mpb goroutine outlives the command (the
// bars must be shut down on every path). tryEarlyRefresh is left to end on the
// container's cancel, so give it a moment.
func noProgressGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for range 50 {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "github.com/vbauerster/mpb") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("mpb goroutines still running after the pull returned:\n%s", stacks)
}

// registryHolding is a test registry that calls hold before it serves the
// blob digest.
func registryHolding(t *testing.T, digest string, hold func(*http.Request)) *ot.Registry {
	return ot.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				hold(r)
			}
			h.ServeHTTP(w, r)
		})
	})
}

func layerDigest(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// On a terminal each layer has a bar (label, bytes, then what became of it),
// and a summary follows the bars.
func TestImagePullOnTerminal(t *testing.T) {
	imageEnv(t)
	base := ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", strings.Repeat("base\n", 1000))), false)
	top := ot.TarLayer(t, ot.Tar(t, ot.File("etc/issue", "top\n")), false)
	// The top layer takes longer than a few redraws, so that its bar is seen
	// downloading and the bars are redrawn in place.
	reg := registryHolding(t, layerDigest(t, top), func(*http.Request) { time.Sleep(500 * time.Millisecond) })
	ot.Push(t, reg.Ref("app:base"), ot.NewImage(t, v1.Config{}, "amd64", base))
	digest := ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", base, top))
	short := func(l v1.Layer) string { return shortDigest(layerDigest(t, l)) }

	r := voidboxOnTerminal(t, "image", "pull", reg.Ref("app:base"))
	if r.code != exitOK {
		t.Fatalf("pull app:base: code %d\n%s", r.code, r.stderr)
	}
	r = voidboxOnTerminal(t, "image", "pull", reg.Ref("app:v1"))
	if r.code != exitOK || r.stdout != reg.Ref("app")+"@"+digest+"\n" {
		t.Fatalf("pull app:v1: code %d stdout %q; want 0 and the pinned reference\n%s", r.code, r.stdout, r.stderr)
	}
	for _, re := range []string{
		`layer 1/2 ` + short(base) + ` \[=+\] \d+ B / \d+ B +cached`,
		`layer 2/2 ` + short(top) + ` \[-+\] 0 B / \d+ B +\r?\n`, // while downloading
		`\x1b\[\dA`, // redrawn in place: the cursor moves back up over the bars
		`layer 2/2 ` + short(top) + ` \[=+\] \d+ B / \d+ B +downloaded`,
		`downloaded\r?\n` + regexp.QuoteMeta(reg.Ref("app:v1")) + `: downloaded, 2 layers, \d`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("the terminal lacks %s:\n%q", re, r.stderr)
		}
	}
	noProgressGoroutines(t)
}

// Ctrl-C during a download: the bar says stopped, the error comes after the
// bars, the exit code is the one of a failed pull, and no bar goroutine is left.
func TestImagePullInterruptedOnTerminal(t *testing.T) {
	imageEnv(t)
	layer := ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", "hello\n")), false)
	d := layerDigest(t, layer)
	reg := registryHolding(t, d, func(r *http.Request) {
		// The pull is under way (its signal handler is installed): press
		// Ctrl-C and hold the layer until the pull gives up.
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Errorf("SIGINT: %v", err)
		}
		<-r.Context().Done()
	})
	ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", layer))

	r := voidboxOnTerminal(t, "image", "pull", reg.Ref("app:v1"))
	if r.code != exitFailed || r.stdout != "" {
		t.Fatalf("interrupted pull: code %d stdout %q; want %d and nothing on stdout\n%q", r.code, r.stdout, exitFailed, r.stderr)
	}
	re := `layer 1/1 ` + shortDigest(d) + ` .* stopped\r?\nvoidbox image pull: [^\x1b]*SIGINT[^\x1b]*$`
	if !regexp.MustCompile(re).MatchString(r.stderr) {
		t.Errorf("the terminal does not end with the stopped bar, then the error (%s):\n%q", re, r.stderr)
	}
	noProgressGoroutines(t)
}

func TestIsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if !isTerminal(tty) || isTerminal(w) || isTerminal(&strings.Builder{}) {
		t.Errorf("isTerminal: pty %v, pipe %v, buffer %v; want true, false, false", isTerminal(tty), isTerminal(w), isTerminal(&strings.Builder{}))
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
