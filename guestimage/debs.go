package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/voidbox/voidbox/internal/digest"
	"github.com/voidbox/voidbox/internal/textfmt"
)

// KernelMetaPackage is the Debian metapackage whose dependency names the
// versioned cloud kernel (linux-image-<release>-cloud-amd64).
const KernelMetaPackage = "linux-image-cloud-amd64"

// BusyboxPackage provides the statically linked /bin/busybox.
const BusyboxPackage = "busybox-static"

// resolveKernelPackage asks apt which versioned kernel package the
// metapackage currently depends on.
func resolveKernelPackage(ctx context.Context) (string, error) {
	out, err := runCmd(ctx, "", "apt-cache", "depends", KernelMetaPackage)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w (if apt has no package lists yet, run apt-get update)", KernelMetaPackage, err)
	}
	pkg, err := parseAptDepends(out)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w (run apt-get update if the package lists are missing)", KernelMetaPackage, err)
	}
	return pkg, nil
}

// parseAptDepends picks the linux-image-*-cloud-amd64 package out of
// `apt-cache depends linux-image-cloud-amd64` output.
func parseAptDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		name := strings.TrimSpace(rest)
		if strings.HasPrefix(name, "linux-image-") && strings.HasSuffix(name, "-cloud-amd64") &&
			name != KernelMetaPackage && !strings.ContainsAny(name, " <>|/") {
			return name, nil
		}
	}
	return "", fmt.Errorf("no linux-image-*-cloud-amd64 dependency in apt-cache output %q", textfmt.Clip(string(out), 200, "..."))
}

// downloadDeb fetches pkg with apt-get download into dir unless a .deb of it
// is already there, and returns the .deb path. Reusing the cached file keeps
// rebuilds offline and reproducible.
func downloadDeb(ctx context.Context, dir, pkg string, log io.Writer) (string, error) {
	if p, ok := findDeb(dir, pkg); ok {
		fmt.Fprintf(log, "using cached %s\n", p)
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create deb cache: %w", err)
	}
	fmt.Fprintf(log, "downloading %s into %s (apt-get download)\n", pkg, dir)
	if _, err := runCmd(ctx, dir, "apt-get", "download", pkg); err != nil {
		return "", fmt.Errorf("download %s: %w (if apt reports unknown packages, run apt-get update)", pkg, err)
	}
	p, ok := findDeb(dir, pkg)
	if !ok {
		return "", fmt.Errorf("apt-get download %s left no %s_*.deb in %s", pkg, pkg, dir)
	}
	return p, nil
}

// downloadPinnedDeb fetches pkg at exactly version into dir (or reuses the
// cached file) and refuses it unless its sha256 is want: the kernel a guest
// runs is built from these bytes and no others.
func downloadPinnedDeb(ctx context.Context, dir, pkg, version, want string, log io.Writer) (string, error) {
	name := filepath.Join(dir, fmt.Sprintf("%s_%s_all.deb", pkg, version))
	if _, err := os.Stat(name); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create deb cache: %w", err)
		}
		fmt.Fprintf(log, "downloading %s=%s into %s (apt-get download)\n", pkg, version, dir)
		if _, err := runCmd(ctx, dir, "apt-get", "download", pkg+"="+version); err != nil {
			return "", fmt.Errorf("download %s=%s: %w (run apt-get update; if Debian no longer serves this version, the pin in guestimage/kernel.go must move)", pkg, version, err)
		}
	} else {
		fmt.Fprintf(log, "using cached %s\n", name)
	}
	got, err := digest.File(name)
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("%s has sha256 %s, want %s (pinned in guestimage/kernel.go); delete it to download it again", name, got, want)
	}
	return name, nil
}

func findDeb(dir, pkg string) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(matches) == 0 {
		return "", false
	}
	sort.Strings(matches)
	return matches[len(matches)-1], true
}

// extractDeb unpacks a .deb's data into a fresh directory with dpkg-deb -x.
func extractDeb(ctx context.Context, deb, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("extract %s: %w", deb, err)
	}
	if _, err := runCmd(ctx, "", "dpkg-deb", "-x", deb, dest); err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(deb), err)
	}
	return nil
}

func runCmd(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	return runCmdEnv(ctx, dir, nil, name, args...)
}

// runCmdEnv is runCmd with extra environment variables.
func runCmdEnv(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, textfmt.Clip(msg, 500, "..."))
		}
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
