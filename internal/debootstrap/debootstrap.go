// Package debootstrap makes Debian root file systems with debootstrap(8): the
// Debian images the tests push to registries, and the root disk agent boxes
// run on. It keeps what a container image keeps (no package caches, manuals or
// documentation) and never leaves the build's mounts behind.
package debootstrap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The suite and mirror Build uses when Options leaves them empty.
const (
	DefaultSuite  = "bookworm"
	DefaultMirror = "http://deb.debian.org/debian"
)

// Options says what to bootstrap. The variant is always minbase: essential
// packages and apt, no more.
type Options struct {
	Suite   string   // DefaultSuite when empty
	Mirror  string   // DefaultMirror when empty
	Include []string // extra packages, e.g. "ca-certificates"
	// DebCache, when set, is a directory that keeps the downloaded .debs
	// between builds (debootstrap --cache-dir), so a rebuild downloads nothing.
	DebCache string
}

// ErrNeedsRoot and ErrNoDebootstrap are why Check refuses.
var (
	ErrNeedsRoot     = errors.New("debootstrap needs root (it chroots into the new tree and creates device nodes)")
	ErrNoDebootstrap = errors.New("debootstrap not found in PATH, /usr/sbin or /sbin: install Debian's debootstrap package (apt-get install debootstrap; scripts/setup.sh installs it)")
)

// Check says whether Build can run here: as root, with debootstrap installed.
func Check() error {
	if os.Geteuid() != 0 {
		return ErrNeedsRoot
	}
	_, err := program()
	return err
}

// program finds debootstrap in PATH or in the sbin directories an ordinary
// PATH often lacks.
func program() (string, error) {
	if p, err := exec.LookPath("debootstrap"); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, "debootstrap")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoDebootstrap
}

// pruned are what a container image leaves out: package caches and lists,
// documentation, manuals, translations.
var pruned = []string{"var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"}

// Build bootstraps a minbase Debian into root, which must not exist yet or
// be empty. On failure root is left for the caller to remove, with nothing
// mounted under it.
func Build(ctx context.Context, root string, opts Options) error {
	if err := Check(); err != nil {
		return err
	}
	prog, _ := program()
	if opts.Suite == "" {
		opts.Suite = DefaultSuite
	}
	if opts.Mirror == "" {
		opts.Mirror = DefaultMirror
	}
	args := []string{"--variant=minbase"}
	if len(opts.Include) > 0 {
		args = append(args, "--include="+strings.Join(opts.Include, ","))
	}
	if opts.DebCache != "" {
		if err := os.MkdirAll(opts.DebCache, 0o755); err != nil {
			return fmt.Errorf("debootstrap: .deb cache: %w", err)
		}
		abs, err := filepath.Abs(opts.DebCache)
		if err != nil {
			return fmt.Errorf("debootstrap: .deb cache: %w", err)
		}
		args = append(args, "--cache-dir="+abs)
	}
	args = append(args, opts.Suite, root, opts.Mirror)
	cmd := exec.CommandContext(ctx, prog, args...)
	out, err := cmd.CombinedOutput()
	// debootstrap mounts /proc and /sys inside the tree and unmounts them on
	// the way out, unless it was killed: never hand back a tree whose removal
	// would walk into the host's /proc or /sys.
	if uerr := Unmount(root); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("debootstrap %s: %w\n%s", strings.Join(args, " "), err, tail(out))
	}
	for _, d := range pruned {
		if err := os.RemoveAll(filepath.Join(root, d)); err != nil {
			return fmt.Errorf("debootstrap: prune %s: %w", d, err)
		}
	}
	return nil
}

// Unmount detaches every mount at or under root (deepest first), so the tree
// can be removed without reaching outside it.
func Unmount(root string) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("debootstrap: list mounts: %w", err)
	}
	points := mountsUnder(b, abs)
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("debootstrap: unmount %s: %w", points[i], err)
		}
	}
	return nil
}

// mountsUnder lists the mount points of a mountinfo table that are root or
// below it, in the table's order (parents before children).
func mountsUnder(mountinfo []byte, root string) []string {
	var points []string
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		p := unescapeMountinfo(f[4])
		if p == root || strings.HasPrefix(p, root+"/") {
			points = append(points, p)
		}
	}
	return points
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) the
// kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return len(s) == 3
}

// tail is the end of a command's output: where debootstrap says what failed.
func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}
