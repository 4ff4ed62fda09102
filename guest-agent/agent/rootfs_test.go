package agent

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// stageRootDir builds a small root file system (a static busybox, a program found only
// there, one in /usr/local/bin) and makes it a mount point, as package rootfs's
// overlay is in the guest. Absolute symlinks point inside it, as an image's do.
func stageRootDir(t *testing.T) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs a static busybox at /bin/busybox (busybox-static): %v", err)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/local/bin", "work"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"bin/busybox":             string(bb),
		"bin/imagehello":          "#!/bin/sh\necho hello from the image\n",
		"usr/local/bin/localtool": "#!/bin/sh\necho local tool\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	for d := root; d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s on itself: %v", root, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	return root
}

// TestStageRoot runs confined execs whose root is another file system: programs and
// the working directory are looked up inside it (a host program is not found there),
// the default PATH is an image's, "/" is that tree, and the agent's own root and the
// root's mount are untouched by what the shim did in its mount namespace.
func TestStageRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a stage root and switching to uid 1000 need root; run the tests as root")
	}
	root := stageRootDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The default working directory (Roots[0]) is the stage root's, as /workspace is
	// both the agent's and the stage root's in the guest.
	e := start(t, Options{StageRoot: root, ShimPath: self, Roots: []string{"/work"}})
	hostDir := t.TempDir()
	run := func(req proto.ExecRequest) (string, error) {
		var out, errb bytes.Buffer
		req.Stdout, req.Stderr = &out, &errb
		res, err := e.client.Exec(ctxT(t), req)
		if err == nil && res.ExitCode != 0 {
			t.Errorf("exec %q: %+v; stderr %q", req.Args, res, errb.String())
		}
		return out.String(), err
	}
	out, err := run(proto.ExecRequest{Args: []string{"sh", "-c", "imagehello; pwd"}})
	if err != nil || out != "hello from the image\n/work\n" {
		t.Errorf("a program only the stage root has: %q, %v", out, err)
	}
	out, err = run(proto.ExecRequest{Dir: "/usr/local", Args: []string{"sh", "-c",
		`echo "$PATH"; pwd; busybox ls /; localtool; busybox id -u; busybox grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status 2>&1 | busybox head -c 60`}})
	want := imagePath + "\n/usr/local\nbin\nusr\nwork\nlocal tool\n1000\ngrep: /proc/self/status: No such file or directory\n"
	if err != nil || out != want {
		t.Errorf("a stage in the stage root sees:\n%s(err %v)\nwant:\n%s", out, err, want)
	}
	// cat is the host's, not the stage root's: not found, and not run.
	var re *proto.RemoteError
	if _, err := run(proto.ExecRequest{Args: []string{"cat", "/etc/hostname"}}); !errors.As(err, &re) || re.Code != proto.CodeNotFound ||
		!strings.Contains(re.Message, imagePath) {
		t.Errorf("cat exists only outside the stage root: %v, want a %s error naming PATH %s", err, proto.CodeNotFound, imagePath)
	}
	if _, err := run(proto.ExecRequest{Dir: hostDir, Args: []string{"imagehello"}}); !errors.As(err, &re) || re.Code != proto.CodeExecFailed ||
		!strings.Contains(re.Message, "chdir "+hostDir) {
		t.Errorf("a working directory outside the stage root: %v, want a %s error naming chdir %s", err, proto.CodeExecFailed, hostDir)
	}
	// The request's PATH applies; an absolute symlink in it resolves in the stage root.
	out, err = run(proto.ExecRequest{Env: map[string]string{"PATH": "/usr/local/bin"}, Args: []string{"/bin/sh", "-c", "localtool"}})
	if err != nil || out != "local tool\n" {
		t.Errorf("with the request's PATH: %q, %v", out, err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil || !strings.Contains(string(mi), " "+root+" ") {
		t.Errorf("the stage root is no longer mounted at %s in the agent's namespace (%v)", root, err)
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Errorf("the agent's own root changed: %v", err)
	}
}

func TestStageRootOptions(t *testing.T) {
	for _, o := range []Options{
		{StageRoot: "rel", UID: 1000, GID: 1000},
		{StageRoot: "/a/../b", UID: 1000, GID: 1000},
		{StageRoot: "/r", Unconfined: true},
	} {
		o.Roots = []string{"/workspace"}
		if _, err := NewServer(o); err == nil || !strings.Contains(err.Error(), "stage root") {
			t.Errorf("NewServer with StageRoot %q, Unconfined %v: %v, want an error naming the stage root", o.StageRoot, o.Unconfined, err)
		}
	}
}

func TestLookPathInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "opt/tool", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{"usr/bin/prog": 0o755, "usr/bin/data": 0o644, "opt/tool/run": 0o755} {
		if err := os.WriteFile(filepath.Join(root, name), nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	// Merged /usr as Debian has it, and absolute links an image holds.
	for link, target := range map[string]string{"bin": "usr/bin", "usr/bin/alias": "/usr/bin/prog", "usr/bin/escape": "/../../../bin/sh"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, dir, path, want string }{
		{"prog", "/", "/bin", "/bin/prog"},
		{"alias", "/", "/sbin:/usr/bin", "/usr/bin/alias"},
		{"./run", "/opt/tool", "", "/opt/tool/run"},
		{"/bin/prog", "/", "", "/bin/prog"},
	} {
		got, err := lookPath(root, c.name, c.dir, c.path)
		if err != nil || got != c.want {
			t.Errorf("lookPath(%q in %s, PATH %s) = %q, %v; want %q", c.name, c.dir, c.path, got, err, c.want)
		}
	}
	// Not there, not executable, or a link that leads out of the root to the host's sh.
	for _, name := range []string{"data", "sh", "escape", "/usr/bin/escape", "home"} {
		if got, err := lookPath(root, name, "/", "/bin:/usr/bin"); err == nil {
			t.Errorf("lookPath(%q) = %q, want not found", name, got)
		}
	}
}
