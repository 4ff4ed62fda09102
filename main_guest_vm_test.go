package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/internal/vmtest"
)

// The guest image travels through a real registry (Debian's docker-registry):
// pushed from this checkout's build, pulled by a machine that has none, and
// booted from there; once pulled it boots with the registry gone.
func TestVMGuestImageFromRegistry(t *testing.T) {
	img := vmtest.Image(t) // before HOME moves: the build reuses the real caches
	reg := ocitest.StartDistribution(t)
	guestEnv(t)
	ref := reg.Ref("voidbox/guest:test")
	r := voidbox(t, "guest", "push", "--cache", filepath.Dir(img.Kernel), ref)
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(reg.Ref("voidbox/guest")) + `@(sha256:([0-9a-f]{64}))\n$`).FindStringSubmatch(r.stdout)
	if r.code != exitOK || m == nil {
		t.Fatalf("push: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	digest, hex := m[1], m[2]

	home := imageEnv(t) // a clean machine: no guest build, empty caches
	pulled := filepath.Join(home, ".voidbox", "guest-images", hex)
	r = voidbox(t, "guest", "info", "--guest-image", ref)
	for _, want := range []string{"kernel:    " + filepath.Join(pulled, "kernel") + "\n", "initramfs: " + filepath.Join(pulled, "initramfs.cpio") + "\n",
		"release:   " + img.Release + "\n", "sha256:    " + img.SHA256 + "\n", "from:      " + reg.Ref("voidbox/guest") + "@" + digest + "\n"} {
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Fatalf("info: exit %d, stdout lacks %q:\n%s\nstderr: %s", r.code, want, r.stdout, r.stderr)
		}
	}

	run := func(what string) string {
		t.Helper()
		r := voidbox(t, "exec", "--sandbox", "vm", "--accel", "tcg", "--guest-image", ref, "examples/hello.star")
		if r.code != exitOK || !strings.Contains(r.stdout, img.Release) {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
		}
		vmtest.WaitNoVMs(t, ownMarker(), 10*time.Second)
		return r.stderr
	}
	run("boot from the pulled image")
	reg.Stop()
	if stderr := run("boot from the cached image with the registry stopped"); !strings.Contains(stderr, "voidbox: warning: guest image: registry "+reg.Host+" unreachable") ||
		!strings.Contains(stderr, "using "+digest) {
		t.Errorf("the offline run does not say it used the tag's cached digest:\n%s", stderr)
	}
	r = voidbox(t, "guest", "info", "--guest-image", reg.Ref("voidbox/guest@"+digest))
	if r.code != exitOK || r.stderr != "" || !strings.Contains(r.stdout, filepath.Join(pulled, "kernel")) {
		t.Fatalf("info by digest with the registry stopped: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
