package guestimage

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
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

func TestBuildReproducibleDebianKernel(t *testing.T) {
	if _, _ = unpackedKernel(t); t.Skipped() {
		return
	}
	imgs := buildTwice(t, KernelDebian)
	names := initramfsNames(t, imgs[0])
	for _, want := range []string{
		"lib/modules/" + imgs[0].Release + "/modules.dep",
		"lib/modules/" + imgs[0].Release + "/kernel/drivers/virtio/virtio_mmio.ko"} {
		if !strings.Contains(names, "\n"+want+"\n") {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	if imgs[0].KernelKind != KernelDebian || !strings.Contains(imgs[0].KernelOrigin, "cloud-amd64") || imgs[0].ConfigSHA256 != "" {
		t.Errorf("image = %+v; want kind debian, origin naming the cloud kernel package, no config digest", imgs[0])
	}
	checkResolve(t, imgs)
}

// TestBuildReproducibleVoidboxKernel builds the default image around the
// compiled kernel in the shared kernel cache (make guest fills it).
func TestBuildReproducibleVoidboxKernel(t *testing.T) {
	kdir, err := DefaultKernelCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(kdir, kernelCacheKey(), "release")); err != nil && testing.Short() {
		t.Skipf("needs the compiled guest kernel in %s (make guest builds it; -short does not compile one)", kdir)
	}
	imgs := buildTwice(t, KernelVoidbox)
	names := initramfsNames(t, imgs[0])
	if strings.Contains(names, "\nlib/modules") {
		t.Error("initramfs of the built-in kernel ships /lib/modules; it must carry no modules")
	}
	f, err := elf.Open(imgs[0].Kernel)
	if err != nil {
		t.Fatalf("kernel %s is not an ELF vmlinux: %v", imgs[0].Kernel, err)
	}
	defer f.Close()
	if !hasPVHNote(t, f) {
		t.Error("vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note: neither Cloud Hypervisor nor QEMU can boot it through PVH")
	}
	if imgs[0].KernelKind != KernelVoidbox || imgs[0].ConfigSHA256 != FragmentSHA256() || !strings.Contains(imgs[0].KernelOrigin, KernelSourceVersion) {
		t.Errorf("image = %+v; want kind voidbox, the fragment's digest and the source version", imgs[0])
	}
	checkResolve(t, imgs)
}

// hasPVHNote looks for the Xen ELF note that carries the PVH entry point.
func hasPVHNote(t *testing.T, f *elf.File) bool {
	const xenElfNotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			t.Fatal(err)
		}
		for len(data) >= 12 {
			namesz, descsz, typ := le32(data[0:]), le32(data[4:]), le32(data[8:])
			off := 12 + align4(namesz)
			if off > len(data) {
				break
			}
			name := strings.TrimRight(string(data[12:12+namesz]), "\x00")
			if name == "Xen" && typ == xenElfNotePhys32Entry {
				return true
			}
			off += align4(descsz)
			if off > len(data) {
				break
			}
			data = data[off:]
		}
	}
	return false
}

func le32(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 | int(b[3])<<24 }
func align4(n int) int  { return (n + 3) &^ 3 }

func buildTwice(t *testing.T, kind string) []Image {
	t.Helper()
	agent := buildTestAgent(t)
	var imgs []Image
	for i := 0; i < 2; i++ {
		img, err := Build(context.Background(), BuildOptions{AgentPath: agent, CacheDir: t.TempDir(), DebDir: sharedDebDir(), Log: testLog{t}, Kernel: kind})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	if imgs[0].SHA256 != imgs[1].SHA256 || imgs[0].KernelSHA256 != imgs[1].KernelSHA256 {
		t.Fatalf("two builds from the same inputs differ: %+v vs %+v", imgs[0], imgs[1])
	}
	return imgs
}

// initramfsNames lists the image's initramfs with GNU cpio, one name a line
// between newlines, after checking what every image must hold.
func initramfsNames(t *testing.T, img Image) string {
	t.Helper()
	data, err := os.ReadFile(img.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	if sha256Hex(data) != img.SHA256 {
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
		"etc/voidbox/modules", "workspace", "root", "dev/console"} {
		if !strings.Contains(names, "\n"+want+"\n") {
			t.Errorf("initramfs lacks %s", want)
		}
	}
	if strings.Contains(names, "\nlinuxrc\n") {
		t.Error("initramfs has busybox's linuxrc; /init must be the only init at the root")
	}
	return names
}

// checkResolve: Resolve finds the cached image and honours overrides and environment.
func checkResolve(t *testing.T, imgs []Image) {
	t.Helper()
	dir := filepath.Dir(imgs[0].Kernel)
	got, err := ResolveIn(dir, "", "")
	if err != nil || got.SHA256 != imgs[0].SHA256 || got.Release != imgs[0].Release || got.KernelOrigin != imgs[0].KernelOrigin {
		t.Fatalf("ResolveIn(cache) = %+v, %v", got, err)
	}
	other := imgs[1].Initramfs
	t.Setenv(EnvInitramfs, other)
	if got, err := ResolveIn(dir, "", ""); err != nil || got.Initramfs != other || got.Kernel != imgs[0].Kernel {
		t.Fatalf("ResolveIn with %s = %+v, %v", EnvInitramfs, got, err)
	}
	if got, err := ResolveIn(dir, "", imgs[0].Initramfs); err != nil || got.Initramfs != imgs[0].Initramfs {
		t.Fatalf("override beats environment: got %+v, %v", got, err)
	}
}

func TestBuildRejectsUnknownKernel(t *testing.T) {
	_, err := Build(context.Background(), BuildOptions{AgentPath: "/nonexistent", CacheDir: t.TempDir(), Kernel: "ubuntu"})
	if err == nil || !strings.Contains(err.Error(), `unknown kernel "ubuntu"`) || !strings.Contains(err.Error(), `"debian"`) {
		t.Fatalf("Build(kernel ubuntu) = %v; want an error naming the value and the choices", err)
	}
}

func TestCheckKernelConfig(t *testing.T) {
	frag := []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=64\n# a comment\n")
	good := []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=64\nCONFIG_OTHER=y\n")
	if err := CheckKernelConfig(frag, good); err != nil {
		t.Fatalf("matching config refused: %v", err)
	}
	bad := []byte("# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_N=8\n")
	err := CheckKernelConfig(frag, bad)
	for _, want := range []string{"CONFIG_A: fragment wants y, Kconfig gave not set", "CONFIG_B: fragment wants not set, Kconfig gave y", "CONFIG_N: fragment wants 64, Kconfig gave 8"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckKernelConfig error %v lacks %q", err, want)
		}
	}
}

// TestFragmentStatesEveryLeftOutChoice pins the hardening choices the issue
// asks for, so that deleting one from the fragment fails here too.
func TestFragmentStatesEveryLeftOutChoice(t *testing.T) {
	cfg := ParseKernelConfig(kernelFragment)
	for _, sym := range HardeningOff {
		if v, ok := cfg[sym]; !ok || v != "" {
			t.Errorf("fragment does not leave %s out", sym)
		}
	}
	for _, sym := range []string{"CONFIG_PVH", "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_NET", "CONFIG_VIRTIO_FS", "CONFIG_VIRTIO_BLK", "CONFIG_OVERLAY_FS", "CONFIG_EXT4_FS", "CONFIG_EROFS_FS", "CONFIG_VIRTIO_VSOCKETS", "CONFIG_TUN", "CONFIG_MEMCG", "CONFIG_CGROUP_PIDS", "CONFIG_SECCOMP_FILTER"} {
		if cfg[sym] != "y" {
			t.Errorf("fragment does not build %s in", sym)
		}
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
	if err == nil || err.Error() != "guest image file /nonexistent/vmlinuz (from "+EnvKernel+") does not exist" {
		t.Fatalf("missing override error = %v; want it to name the file once and %s", err, EnvKernel)
	}
	_, err = ResolveIn(t.TempDir(), "/nonexistent/k", "")
	if err == nil || err.Error() != "guest image file /nonexistent/k (from --kernel) does not exist" {
		t.Fatalf("missing --kernel error = %v; want it to name the flag", err)
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
