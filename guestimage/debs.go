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
	return "", fmt.Errorf("no linux-image-*-cloud-amd64 dependency in apt-cache output %q", truncate(string(out), 200))
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
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, truncate(msg, 500))
		}
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
