package vm

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/runtime"
)

// busyboxImage is a small image around the host's static busybox: a shell, a program
// that exists only in it (imagehello), a user "app" (uid 4321) with its home, and the
// given config.
func busyboxImage(t *testing.T, cfg v1.Config, extra ...ocitest.Entry) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
	entries := []ocitest.Entry{
		ocitest.Dir("bin"), ocitest.Dir("etc"), ocitest.Dir("home"),
		{Name: "bin/busybox", Body: string(bb), Type: '0', Mode: 0o755},
		ocitest.Symlink("bin/sh", "busybox"), ocitest.Symlink("bin/echo", "busybox"), ocitest.Symlink("bin/cat", "busybox"),
		ocitest.Symlink("bin/id", "busybox"), ocitest.Symlink("bin/pwd", "busybox"), ocitest.Symlink("bin/ls", "busybox"),
		ocitest.Symlink("bin/touch", "busybox"), ocitest.Symlink("bin/sha256sum", "busybox"),
		{Name: "bin/imagehello", Body: "#!/bin/sh\necho hello from the image\n", Type: '0', Mode: 0o755},
		ocitest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:4321:4322:app:/home/app:/bin/sh\n"),
		ocitest.File("etc/group", "root:x:0:\napp:x:4322:\n"),
		{Name: "home/app", Type: '5', Mode: 0o755, UID: 4321, GID: 4322},
	}
	entries = append(entries, extra...)
	return ocitest.NewImage(t, cfg, "amd64", ocitest.TarLayer(t, ocitest.Tar(t, entries...), false))
}

func imageProvider(t *testing.T, store string, policy oci.PullPolicy) *Provider {
	t.Helper()
	s, err := oci.Open(oci.Options{Dir: store})
	if err != nil {
		t.Fatal(err)
	}
	img := vmtest.Image(t)
	p, err := New(Options{VMM: vmtest.TCG(t), Kernel: img.Kernel, Initramfs: img.Initramfs, Images: s, ImagePull: policy})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImageSkillsAndMountsInVM boots a box whose root is an image from a real registry
// (Debian's docker-registry on 127.0.0.1), with an image skill and two host mounts,
// and checks what its stage sees; then that the image runs from the cache with the
// registry stopped, and that an rw mount's file reaches the next VM.
func TestImageSkillsAndMountsInVM(t *testing.T) {
	vmtest.Require(t)
	reg := ocitest.StartDistribution(t)
	appRef, toolRef := reg.Ref("t/app:v1"), reg.Ref("t/tool:v1")
	ocitest.Push(t, appRef, busyboxImage(t, v1.Config{
		Env: []string{"PATH=/bin", "GREETING=from-image", "BOTH=image"}, WorkingDir: "/home/app", User: "app"}))
	bb, _ := os.ReadFile("/bin/busybox")
	ocitest.Push(t, toolRef, ocitest.NewImage(t, v1.Config{}, "amd64", ocitest.TarLayer(t, ocitest.Tar(t,
		ocitest.Dir("bin"), ocitest.Entry{Name: "bin/busybox", Body: string(bb), Type: '0', Mode: 0o755}), false)))

	roDir, rwDir := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(roDir, "in.txt"), []byte("from the host\n"), 0o644)
	os.Chown(rwDir, 4321, 4322) // the image's user writes there, as a user's own directory
	os.Chmod(roDir, 0o755)
	store := t.TempDir()
	spec := runtime.SandboxSpec{
		Name: "img", MemoryMB: 256, Image: appRef,
		Skills: []runtime.Skill{{Kind: runtime.SkillImage, Name: toolRef, Image: toolRef, MountPath: "/opt/tool"}},
		Mounts: []runtime.Mount{{Host: roDir, Guest: "/data", Mode: runtime.MountRO}, {Host: rwDir, Guest: "/out", Mode: runtime.MountRW}},
	}
	s := openWith(t, imageProvider(t, store, oci.PullAlways), spec)

	exec := func(t *testing.T, env map[string]string, script string) (string, int) {
		t.Helper()
		var out strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", script}, Env: env, Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return out.String(), res.ExitCode
	}
	t.Run("a program only the image has", func(t *testing.T) {
		out, code := exec(t, nil, "imagehello; ls /init 2>&1 || echo no-initramfs")
		if code != 0 || out != "hello from the image\nls: /init: No such file or directory\nno-initramfs\n" {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("image Env under the box's, WorkingDir, User", func(t *testing.T) {
		out, _ := exec(t, map[string]string{"BOTH": "box"}, `echo "$GREETING $BOTH"; pwd; id -u; id -g`)
		if out != "from-image box\n/home/app\n4321\n4322\n" {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("an image skill's binary runs from its mount", func(t *testing.T) {
		out, code := exec(t, nil, "/opt/tool/bin/busybox echo from-skill; touch /opt/tool/x 2>&1")
		if !strings.HasPrefix(out, "from-skill\n") || !strings.Contains(out, "Read-only file system") || code == 0 {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("ro mount reads, refuses writes", func(t *testing.T) {
		out, code := exec(t, nil, "cat /data/in.txt; echo x > /data/new 2>&1")
		if code == 0 || !strings.HasPrefix(out, "from the host\n") || !strings.Contains(out, "Read-only file system") {
			t.Fatalf("exit %d: %q", code, out)
		}
		if _, err := os.Stat(filepath.Join(roDir, "new")); err == nil {
			t.Fatal("a write under the ro mount reached the host")
		}
	})
	t.Run("rw mount writes reach the host", func(t *testing.T) {
		if out, code := exec(t, nil, "echo kept > /out/file"); code != 0 {
			t.Fatalf("exit %d: %q", code, out)
		}
		b, err := os.ReadFile(filepath.Join(rwDir, "file"))
		if err != nil || string(b) != "kept\n" {
			t.Fatalf("host file: %q, %v", b, err)
		}
		var st syscall.Stat_t
		syscall.Stat(filepath.Join(rwDir, "file"), &st)
		if st.Uid != 4321 {
			t.Errorf("the file is owned by uid %d on the host, want the stage's 4321", st.Uid)
		}
	})
	s.Close()

	// The registry goes away: a new provider on the same cache still runs the image (its
	// tag's last digest), and the rw mount's file is there for the next VM.
	reg.Stop()
	s2 := openWith(t, imageProvider(t, store, oci.PullAlways), runtime.SandboxSpec{
		Name: "img2", MemoryMB: 256, Image: appRef,
		Mounts: []runtime.Mount{{Host: rwDir, Guest: "/out", Mode: runtime.MountRW}},
	})
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s2.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", "imagehello; cat /out/file"}, Stdout: &out, Stderr: &out}); err != nil || out.String() != "hello from the image\nkept\n" {
		t.Fatalf("with the registry stopped: %q, %v", out.String(), err)
	}
}

// Image problems are stage errors before anything boots (fakeVMM fails the test if
// anything does): a reference that does not parse, an unknown tag, a registry that
// refuses the credentials, an unreachable registry with nothing cached.
func TestImageErrorsBeforeBoot(t *testing.T) {
	reg := ocitest.NewRegistry(t, nil)
	locked := ocitest.NewRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
		})
	})
	s, err := oci.Open(oci.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{VMM: fakeVMM{}, Kernel: "/dev/null", Initramfs: "/dev/null", Images: s})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, want string
	}{
		{"Bad/Ref", "Bad/Ref"},
		{reg.Ref("t/none:v1"), "t/none:v1"},
		{locked.Ref("t/app:v1"), "401"},
		{"127.0.0.1:1/t/app:v1", "127.0.0.1:1"},
	} {
		_, err := p.Open(context.Background(), runtime.SandboxSpec{Name: "e", Image: tc.ref})
		if err == nil || !strings.Contains(err.Error(), "box e: image = ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("image %s: err %v, want one naming the box, the image and %q", tc.ref, err, tc.want)
		}
		if errors.Is(err, errNothingBoots) {
			t.Errorf("image %s: a VM boot was attempted", tc.ref)
		}
	}
}
