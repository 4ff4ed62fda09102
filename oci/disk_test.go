package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/voidbox/voidbox/oci/unpack"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

// busyboxAttrs are owner and mode (as debugfs prints them) of entries of
// busyboxLayer.
var busyboxAttrs = map[string][3]string{
	"/":               {"0", "0", "0755"},
	"/bin/busybox":    {"0", "0", "0755"},
	"/etc/shadow":     {"0", "42", "0000"},
	"/home/app":       {"1000", "1000", "0750"},
	"/home/app/notes": {"1000", "1000", "0644"},
}

// checkInodes compares uid, gid and mode of paths in a disk image, read
// with debugfs, with want.
func checkInodes(t *testing.T, disk string, want map[string][3]string) {
	t.Helper()
	for path, w := range want {
		out := debugfs(t, disk, "stat "+path)
		m := regexp.MustCompile(`Mode:\s+(\d+)`).FindStringSubmatch(out)
		u := regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`).FindStringSubmatch(out)
		if m == nil || u == nil {
			t.Fatalf("debugfs stat %s: %s", path, out)
		}
		if got := [3]string{u[1], u[2], m[1]}; got != w {
			t.Errorf("%s: %s:%s %s, want %s:%s %s", path, got[0], got[1], got[2], w[0], w[1], w[2])
		}
	}
}

// The disk holds the image's tree with its owners and modes, whether
// voidbox unpacks as root (chown) or not (debugfs sets them afterwards).
func TestDiskHasTheImageTree(t *testing.T) {
	for _, chown := range []bool{true, false} {
		t.Run(map[bool]string{true: "as root", false: "without root"}[chown], func(t *testing.T) {
			reg := ot.NewRegistry(t, nil)
			lower := ot.TarLayer(t, busyboxLayer(t), false)
			upper := ot.TarLayer(t, ot.Tar(t, ot.File("etc/.wh.motd", ""), ot.File("bin/.wh.su", ""), ot.File("etc/hostname", "box\n")), true)
			img0 := ot.NewImage(t, v1.Config{User: "app:staff"}, "amd64",
				ot.TarLayer(t, ot.Tar(t, ot.Dir("etc/"), ot.File("etc/motd", "old"), ot.Dir("var/cache/"), ot.File("var/cache/x", "x")), false),
				ot.TarLayer(t, ot.Tar(t, ot.File("var/cache/.wh..wh..opq", ""), ot.File("var/cache/y", "y")), false),
				lower, upper)
			ot.Push(t, reg.Ref("rootfs:1"), img0)
			s := openStore(t, Options{})
			s.chown = chown
			img := pull(t, s, reg.Ref("rootfs:1"), PullOptions{})
			d, err := s.Disk(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			if uid, gid, err := d.Owner(); err != nil || uid != 1000 || gid != 50 {
				t.Errorf("owner %d:%d %v, want app:staff = 1000:50", uid, gid, err)
			}
			if fsck, err := exec.Command("e2fsck", "-fn", d.Path).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck: %v\n%s", err, fsck)
			}
			root := debugfs(t, d.Path, "ls /")
			for _, want := range []string{"bin", "etc", "home", "lib64", "var"} {
				if !strings.Contains(root, want) {
					t.Errorf("ls / = %q, missing %s", root, want)
				}
			}
			etc := debugfs(t, d.Path, "ls /etc")
			if strings.Contains(etc, "motd") || !strings.Contains(etc, "hostname") {
				t.Errorf("ls /etc = %q: want motd whited out, hostname present", etc)
			}
			if bin := debugfs(t, d.Path, "ls /bin"); strings.Contains(bin, "su") {
				t.Errorf("ls /bin = %q: su was whited out", bin)
			}
			if cache := debugfs(t, d.Path, "ls /var/cache"); strings.Contains(cache, " x ") || !strings.Contains(cache, "y") {
				t.Errorf("ls /var/cache = %q: the opaque dir keeps only y", cache)
			}
			checkInodes(t, d.Path, busyboxAttrs)
			if out := debugfs(t, d.Path, "stat /lib64/ld-linux-x86-64.so.2"); !strings.Contains(out, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") {
				t.Errorf("absolute symlink: %s", out)
			}
			// The busybox binary comes out byte for byte.
			dump := filepath.Join(t.TempDir(), "busybox")
			debugfs(t, d.Path, "dump /bin/busybox "+dump)
			got, _ := os.ReadFile(dump)
			want, _ := os.ReadFile("/bin/busybox")
			if !bytes.Equal(got, want) {
				t.Errorf("busybox in the disk differs from /bin/busybox (%d vs %d bytes)", len(got), len(want))
			}
			// Cached per digest: the second call returns the same disk without building.
			fi, _ := os.Stat(d.Path)
			again, err := s.Disk(context.Background(), img)
			if err != nil || again.Path != d.Path {
				t.Fatalf("second Disk: %v %v", again, err)
			}
			if fi2, _ := os.Stat(d.Path); !fi2.ModTime().Equal(fi.ModTime()) {
				t.Errorf("the disk was rebuilt")
			}
			if tmp, _ := os.ReadDir(s.path("tmp")); len(tmp) != 0 {
				t.Errorf("leftovers in tmp: %v", tmp)
			}
		})
	}
}

func TestMaliciousImageIsRefused(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	outside := t.TempDir()
	evil := ot.TarLayer(t, ot.Tar(t, ot.Symlink("escape", outside), ot.File("escape/pwned", "x")), false)
	ot.Push(t, reg.Ref("evil:1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, busyboxLayer(t), false), evil))
	s := openStore(t, Options{})
	img := pull(t, s, reg.Ref("evil:1"), PullOptions{})
	_, err := s.Disk(context.Background(), img)
	if !errors.Is(err, unpack.ErrRefused) {
		t.Fatalf("want a refusal, got %v", err)
	}
	for _, want := range []string{reg.Ref("evil:1"), img.Layers[1].Digest, `"escape/pwned"`, "leaves the root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}
	if _, err := os.Stat(s.diskPath(img.Digest)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a disk was kept: %v", err)
	}
	if tmp, _ := os.ReadDir(s.path("tmp")); len(tmp) != 0 {
		t.Errorf("leftovers in tmp: %v", tmp)
	}
}

func TestUnresolvableUser(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ot.Push(t, reg.Ref("u:1"), ot.NewImage(t, v1.Config{User: "ghost"}, "amd64", ot.TarLayer(t, busyboxLayer(t), false)))
	s := openStore(t, Options{})
	d, err := s.Disk(context.Background(), pull(t, s, reg.Ref("u:1"), PullOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Owner(); err == nil || !strings.Contains(err.Error(), `no user "ghost" in the image's /etc/passwd`) {
		t.Fatalf("owner: %v", err)
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("# comment\nroot:x:0:0::/root:/bin/sh\nweb:x:33:34::/var/www:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nwww:x:34:\nlog:x:4:\n"), 0o644)
	for user, want := range map[string]string{
		"": "0:0", "root": "0:0", "web": "33:34", "33": "33:34", "500": "500:0", "web:log": "33:4",
		"web:7": "33:7", "500:log": "500:4", "ghost": `no user "ghost"`, "web:nogroup": `no group "nogroup"`,
		":5": "want user", "web:": "want user", "4294967295": `no user "4294967295"`,
	} {
		uid, gid, err := resolveUser(root, user)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = strconv.Itoa(uid) + ":" + strconv.Itoa(gid)
		}
		if !strings.Contains(got, want) {
			t.Errorf("resolveUser(%q) = %q, want %q", user, got, want)
		}
	}
	// No /etc/passwd: numeric users still work, names do not.
	empty := t.TempDir()
	if uid, gid, err := resolveUser(empty, "1000:1000"); err != nil || uid != 1000 || gid != 1000 {
		t.Errorf("numeric user without passwd: %d:%d %v", uid, gid, err)
	}
	if _, _, err := resolveUser(empty, "app"); err == nil {
		t.Errorf("named user without passwd resolved")
	}
}

func TestEnviron(t *testing.T) {
	c := Config{Env: []string{"PATH=/opt/bin:/bin", "LANG=C", "EMPTY=", "LANG=C.UTF-8"}}
	got := c.Environ(map[string]string{"LANG": "en_US.UTF-8", "ZED": "1", "ALPHA": "2"})
	want := []string{"PATH=/opt/bin:/bin", "LANG=en_US.UTF-8", "EMPTY=", "ALPHA=2", "ZED=1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Environ = %q, want %q", got, want)
	}
	if got := (Config{}).Environ(nil); len(got) != 1 || got[0] != "PATH="+DefaultPath {
		t.Fatalf("no image env: %q", got)
	}
	if got := (Config{}).Environ(map[string]string{"PATH": "/x"}); len(got) != 1 || got[0] != "PATH=/x" {
		t.Fatalf("box PATH wins: %q", got)
	}
}

func TestMissingToolNamesThePackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := tool("mkfs.ext4"); err != nil {
		t.Fatalf("mkfs.ext4 is in /usr/sbin or /sbin on this machine: %v", err)
	}
	_, err := tool("mkfs.nothing")
	if err == nil || !strings.Contains(err.Error(), "mkfs.nothing not found") || !strings.Contains(err.Error(), "apt-get install e2fsprogs") {
		t.Fatalf("missing tool: %v", err)
	}
}
