package guestimage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sharedDebDir keeps downloaded .debs across test runs and packages.
func sharedDebDir() string { return filepath.Join(os.TempDir(), "voidbox_test_debs") }

// unpackedKernel downloads (once) and unpacks the cloud kernel package,
// returning the extraction root and the release.
func unpackedKernel(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	pkg, err := resolveKernelPackage(ctx)
	if err != nil {
		t.Skipf("needs apt package lists for %s: %v", KernelMetaPackage, err)
	}
	deb, err := downloadDeb(ctx, sharedDebDir(), pkg, testLog{t})
	if err != nil {
		t.Skipf("needs the Debian mirror to download %s: %v", pkg, err)
	}
	root := t.TempDir()
	if err := extractDeb(ctx, deb, root); err != nil {
		t.Fatal(err)
	}
	release, err := findRelease(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, release
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestResolveModulesRealKernel(t *testing.T) {
	root, release := unpackedKernel(t)
	set, err := ResolveModules(filepath.Join(root, "lib/modules", release), GuestModules)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"virtio", "virtio_ring", "virtio_mmio", "failover", "net_failover", "fuse", "vsock", "vmw_vsock_virtio_transport_common"} {
		if set.Modules[want] == nil {
			t.Errorf("dependency closure lacks %s", want)
		}
	}
	if strings.Join(set.Load, ",") != strings.Join(GuestModules, ",") {
		t.Errorf("Load = %v, want %v (none of them is built into the cloud kernel)", set.Load, GuestModules)
	}
	dep := parseDepFile(t, set.ModulesDep())
	if len(dep) != len(set.Modules) {
		t.Fatalf("modules.dep has %d lines for %d modules", len(dep), len(set.Modules))
	}
	// Loading right to left must load every module after its dependencies.
	byPath := map[string]*Module{}
	for _, m := range set.Modules {
		byPath[m.RelPath] = m
	}
	for mod, deps := range dep {
		loaded := map[string]bool{}
		for i := len(deps) - 1; i >= 0; i-- {
			m := byPath[deps[i]]
			if m == nil {
				t.Fatalf("%s: dependency %s is not in the set", mod, deps[i])
			}
			for _, d := range m.Depends {
				if !loaded[set.Modules[d].RelPath] {
					t.Errorf("%s: %s is loaded before its dependency %s", mod, deps[i], d)
				}
			}
			loaded[deps[i]] = true
		}
	}
	if got := strings.Join(dep["kernel/drivers/net/virtio_net.ko"], " "); !strings.Contains(got, "kernel/net/core/failover.ko") || !strings.Contains(got, "kernel/drivers/virtio/virtio_ring.ko") {
		t.Errorf("virtio_net deps %q lack failover or virtio_ring", got)
	}
	compareWithDepmod(t, root, release, dep)
}

func parseDepFile(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("modules.dep line %q has no colon", line)
		}
		out[mod] = strings.Fields(deps)
	}
	return out
}

// compareWithDepmod checks our dependency sets against Debian's depmod run on
// the same package, when kmod is installed.
func compareWithDepmod(t *testing.T, root, release string, ours map[string][]string) {
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		t.Log("depmod not installed; skipping the cross-check against kmod")
		return
	}
	if out, err := exec.Command(depmod, "-b", root, release).CombinedOutput(); err != nil {
		t.Fatalf("depmod: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(root, "lib/modules", release, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	theirs := parseDepFile(t, data)
	for mod, deps := range ours {
		want := append([]string(nil), theirs[mod]...)
		got := append([]string(nil), deps...)
		if strings.Join(sorted(got), " ") != strings.Join(sorted(want), " ") {
			t.Errorf("%s: deps %v, depmod says %v", mod, got, want)
		}
	}
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

// BuildTestAgent compiles testdata/agent into dir and returns its path.
func buildTestAgent(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "agent")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test agent: %v\n%s", err, msg)
	}
	return out
}

func TestBuildReproducible(t *testing.T) {
	if _, _ = unpackedKernel(t); t.Skipped() {
		return
	}
	agent := buildTestAgent(t)
	ctx := context.Background()
	var imgs []Image
	for i := 0; i < 2; i++ {
		img, err := Build(ctx, BuildOptions{AgentPath: agent, CacheDir: t.TempDir(), DebDir: sharedDebDir(), Log: testLog{t}})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	if imgs[0].SHA256 != imgs[1].SHA256 || imgs[0].KernelSHA256 != imgs[1].KernelSHA256 {
		t.Fatalf("two builds from the same inputs differ: %+v vs %+v", imgs[0], imgs[1])
	}
	data, err := os.ReadFile(imgs[0].Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	if sha256Hex(data) != imgs[0].SHA256 {
		t.Fatal("Image.SHA256 does not match the initramfs file")
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(data)
	list, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t on the built initramfs: %v", err)
	}
	names := "\n" + string(list)
	for _, want := range []string{"init", "bin/busybox", "bin/sh", "bin/wget", "bin/sha256sum", "sbin/poweroff", "sbin/insmod",
		"etc/voidbox/modules", "workspace", "root", "dev/console",
		"lib/modules/" + imgs[0].Release + "/modules.dep",
		"lib/modules/" + imgs[0].Release + "/kernel/drivers/virtio/virtio_mmio.ko"} {
		if !strings.Contains(names, "\n"+want+"\n") {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	if strings.Contains(names, "\nlinuxrc\n") {
		t.Error("initramfs has busybox's linuxrc; /init must be the only init at the root")
	}
	// Resolve finds the cached image and honours overrides and environment.
	dir := filepath.Dir(imgs[0].Kernel)
	got, err := ResolveIn(dir, "", "")
	if err != nil || got.SHA256 != imgs[0].SHA256 || got.Release != imgs[0].Release {
		t.Fatalf("ResolveIn(cache) = %+v, %v", got, err)
	}
	t.Setenv(EnvInitramfs, agent)
	if got, err := ResolveIn(dir, "", ""); err != nil || got.Initramfs != agent || got.Kernel != imgs[0].Kernel {
		t.Fatalf("ResolveIn with %s = %+v, %v", EnvInitramfs, got, err)
	}
	if got, err := ResolveIn(dir, "", imgs[1].Initramfs); err != nil || got.Initramfs != imgs[1].Initramfs {
		t.Fatalf("override beats environment: got %+v, %v", got, err)
	}
}

func TestResolveMissing(t *testing.T) {
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvInitramfs, "")
	_, err := ResolveIn(t.TempDir(), "", "")
	if !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), `"voidbox guest build"`) {
		t.Fatalf("missing cache error = %v; want ErrNotBuilt naming the build command", err)
	}
	t.Setenv(EnvKernel, "/nonexistent/vmlinuz")
	t.Setenv(EnvInitramfs, "/nonexistent/initrd")
	_, err = ResolveIn(t.TempDir(), "", "")
	if err == nil || !strings.Contains(err.Error(), EnvKernel) {
		t.Fatalf("missing override error = %v; want it to name %s", err, EnvKernel)
	}
}

func TestReadAgentRejects(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "init.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := readAgent(script); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("readAgent(script) = %v, want not-an-ELF error", err)
	}
	if _, err := readAgent("/bin/ls"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("readAgent(/bin/ls) = %v, want dynamically-linked error", err)
	}
	if _, err := readAgent(""); err == nil || !strings.Contains(err.Error(), "AgentPath") {
		t.Errorf("readAgent(\"\") = %v, want it to name AgentPath", err)
	}
}

func TestParseApplets(t *testing.T) {
	got := parseApplets([]byte("bin/sh\nlinuxrc\nusr/bin/wget\nsbin/poweroff\nusr/sbin/chroot\nbin/busybox\n../etc/x\nusr/bin/sh\n"))
	want := "/bin/sh /bin/wget /sbin/chroot /sbin/poweroff"
	if strings.Join(got, " ") != want {
		t.Fatalf("parseApplets = %v, want %s", got, want)
	}
}

func TestParseAptDepends(t *testing.T) {
	out := "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"
	if got, err := parseAptDepends([]byte(out)); err != nil || got != "linux-image-6.1.0-56-cloud-amd64" {
		t.Fatalf("parseAptDepends = %q, %v", got, err)
	}
	if _, err := parseAptDepends([]byte("N: Unable to locate package linux-image-cloud-amd64\n")); err == nil {
		t.Fatal("parseAptDepends accepted output without a kernel dependency")
	}
}
