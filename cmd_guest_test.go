package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/guestimage"
	ot "github.com/voidbox/voidbox/internal/ocitest"
)

// fakeGuestCache is a guest image cache directory of made-up files, as
// 'voidbox guest build' would leave one.
func fakeGuestCache(t *testing.T) (string, guestimage.Image) {
	t.Helper()
	src := guestimage.Image{Kernel: writeFile(t, t.TempDir(), "vmlinux", "a kernel"), Initramfs: writeFile(t, t.TempDir(), "initrd", "an initramfs"),
		Release: "6.1.0-fake", KernelKind: guestimage.KernelVoidbox, KernelOrigin: "made up for a test"}
	a, err := guestimage.ReadArtifact(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "guest")
	img, err := guestimage.Install(dir, a.Metadata, strings.NewReader("a kernel"), strings.NewReader("an initramfs"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, img
}

// guestEnv is imageEnv without any guest image chosen by the environment.
func guestEnv(t *testing.T) string {
	t.Helper()
	for _, v := range []string{guestimage.EnvKernel, guestimage.EnvInitramfs, guestimage.EnvGuestImage} {
		t.Setenv(v, "")
	}
	return imageEnv(t)
}

func TestGuestPushThenInfoPulls(t *testing.T) {
	guestEnv(t)
	reg := ot.NewRegistry(t, nil)
	cache, built := fakeGuestCache(t)
	ref := reg.Ref("voidbox/guest:v1")
	r := voidbox(t, "guest", "push", "--cache", cache, ref)
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(reg.Ref("voidbox/guest")) + `@(sha256:([0-9a-f]{64}))\n$`).FindStringSubmatch(r.stdout)
	if r.code != exitOK || m == nil || !strings.Contains(r.stderr, ref+": pushed the guest image") {
		t.Fatalf("push: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	digest, hex := m[1], m[2]

	home := imageEnv(t) // a machine that never built or pulled anything
	r = voidbox(t, "guest", "info", "--guest-image", ref)
	want := "kernel:    " + filepath.Join(home, ".voidbox", "guest-images", hex, "kernel") + "\n" +
		"initramfs: " + filepath.Join(home, ".voidbox", "guest-images", hex, "initramfs.cpio") + "\n" +
		"release:   6.1.0-fake\nsha256:    " + built.SHA256 + "\norigin:    made up for a test\n" +
		"from:      " + reg.Ref("voidbox/guest") + "@" + digest + "\n"
	if r.code != exitOK || r.stdout != want {
		t.Fatalf("info: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
	if strings.Contains(r.stderr, "layer ") {
		t.Errorf("a pull off a terminal printed progress:\n%s", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(home, ".voidbox", "guest-images", hex, "kernel")); err != nil || string(b) != "a kernel" {
		t.Errorf("pulled kernel %q, %v", b, err)
	}
	// The pulled image is in the OCI cache like any image.
	if r := voidbox(t, "image", "ls"); !strings.Contains(r.stdout, ref+"  "+digest) {
		t.Errorf("image ls does not list the guest image:\n%s", r.stdout)
	}

	// From the environment, and with the registry gone: by digest from the
	// cache, silently; by tag from the cache, with a warning.
	reg.Server.Close()
	t.Setenv(guestimage.EnvGuestImage, reg.Ref("voidbox/guest@"+digest))
	if r := voidbox(t, "guest", "info"); r.code != exitOK || r.stdout != want || r.stderr != "" {
		t.Fatalf("offline info by digest from $%s: exit %d\n%s%s", guestimage.EnvGuestImage, r.code, r.stdout, r.stderr)
	}
	r = voidbox(t, "guest", "info", "--guest-image", ref)
	if r.code != exitOK || r.stdout != want || !strings.HasPrefix(r.stderr, "voidbox: warning: guest image: registry "+reg.Host+" unreachable") {
		t.Fatalf("offline info by tag: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The order: $VOIDBOX_KERNEL beats the guest image; the initramfs is still pulled.
	t.Setenv(guestimage.EnvKernel, built.Kernel)
	r = voidbox(t, "guest", "info")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "kernel:    "+built.Kernel+"\ninitramfs: "+filepath.Join(home, ".voidbox", "guest-images", hex, "initramfs.cpio")+"\n") {
		t.Fatalf("info with $%s: exit %d\n%s%s", guestimage.EnvKernel, r.code, r.stdout, r.stderr)
	}
	// Both files given: the reference is not needed, so not pulled.
	r = voidbox(t, "guest", "info", "--guest-image", reg.Ref("voidbox/never:pulled"), "--initramfs", built.Initramfs)
	if r.code != exitOK || strings.Contains(r.stdout, "from:") {
		t.Fatalf("info with both files: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestGuestImageErrors(t *testing.T) {
	guestEnv(t)
	reg := ot.NewRegistry(t, nil)
	app := reg.Ref("app:v1")
	ot.Push(t, app, ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", "hi\n")), false)))
	cache, _ := fakeGuestCache(t)
	prog := writeFile(t, t.TempDir(), "p.star", `pipeline = box(name = "a", cmd = ["echo", "hi"])`+"\n")
	cases := []struct {
		name string
		args []string
		env  string // $VOIDBOX_GUEST_IMAGE
		code int
		want string
	}{
		{"info bad ref", []string{"guest", "info", "--guest-image", "Bad Ref"}, "", exitUsage,
			`voidbox guest info: --guest-image: image reference "Bad Ref" is not valid; want [registry[:port]/]path`},
		{"exec bad env ref", []string{"exec", "--sandbox", "mock", prog}, "UPPER/case", exitUsage,
			`voidbox exec: $VOIDBOX_GUEST_IMAGE: image reference "UPPER/case" is not valid`},
		{"bench bad ref", []string{"bench", "boot", "--guest-image", "a:b:c"}, "", exitUsage, `--guest-image: image reference "a:b:c" is not valid`},
		{"not a guest image", []string{"guest", "info", "--guest-image", app}, "", exitFailed,
			"voidbox guest info: --guest-image: guest image " + app + " is not a voidbox guest image (an OCI artifact of type application/vnd.voidbox.guest.v1+json, as 'voidbox guest push' makes): oci: pull " + app + ": wrong media type: it is a container image"},
		{"exec not a guest image", []string{"exec", "--sandbox", "vm", prog}, app, exitFailed,
			"voidbox exec: no microVM sandbox: $VOIDBOX_GUEST_IMAGE: guest image " + app + " is not a voidbox guest image"},
		{"unknown tag", []string{"guest", "info", "--guest-image", reg.Ref("voidbox/guest:nope")}, "", exitFailed,
			`oci: pull ` + reg.Ref("voidbox/guest:nope") + `: tag "nope" not found`},
		{"push no ref", []string{"guest", "push", "--cache", cache}, "", exitUsage, "voidbox guest push: want one reference to push to, got 0 arguments"},
		{"push bad ref", []string{"guest", "push", "--cache", cache, "Bad Ref"}, "", exitUsage, `voidbox guest push: image reference "Bad Ref" is not valid`},
		{"push to digest", []string{"guest", "push", "--cache", cache, reg.Ref("g@sha256:" + strings.Repeat("a", 64))}, "", exitUsage, "it names a digest; push to a tag"},
		{"push nothing built", []string{"guest", "push", "--cache", t.TempDir(), reg.Ref("g:v1")}, "", exitFailed, `build it with "voidbox guest build"`},
		{"push bad insecure", []string{"guest", "push", "--cache", cache, "--insecure-registry", "Bad Host", reg.Ref("g:v1")}, "", exitUsage, `insecure registry "Bad Host" is not valid`},
		{"unknown subcommand", []string{"guest", "pull"}, "", exitUsage, "voidbox guest: want a subcommand: build, info or push"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(guestimage.EnvGuestImage, c.env)
			r := voidbox(t, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("voidbox %q: exit %d, stderr %q; want exit %d and %q", c.args, r.code, r.stderr, c.code, c.want)
			}
		})
	}
}
