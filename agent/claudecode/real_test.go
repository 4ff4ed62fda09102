package claudecode

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/internal/debootstrap"
)

// realInstall installs the real DefaultVersion from registry.npmjs.org (the
// distribution channel voidbox uses; 190 MB, a few seconds here) into a test
// cache under the user cache directory, kept between runs like the
// debootstrap cache so a second run downloads nothing.
func realInstall(t *testing.T) *Installed {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads claude-code from registry.npmjs.org; runs without -short")
	}
	user, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	in, err := Install(context.Background(), Options{CacheDir: filepath.Join(user, "voidbox", "claude-code")})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestRealInstall(t *testing.T) {
	in := realInstall(t)
	cmd := exec.Command(in.Path, "--version")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin", "DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --version: %v", in.Path, err)
	}
	if got, want := strings.TrimSpace(string(out)), DefaultVersion+" (Claude Code)"; got != want {
		t.Errorf("claude --version = %q, want %q", got, want)
	}
	if in.Size < 100<<20 || !strings.HasPrefix(in.Integrity, "sha512-") {
		t.Errorf("installed %+v: want the ~400 MB executable and its sha512 integrity", in)
	}
}

// The root disk holds bash, coreutils, ca-certificates, the stage user and
// claude, passes e2fsck, and claude runs in it as the stage user.
func TestRootDisk(t *testing.T) {
	in := realInstall(t)
	if err := debootstrap.Check(); err != nil {
		t.Skip(err)
	}
	var log strings.Builder
	d, err := RootDisk(context.Background(), in, RootDiskOptions{Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("%s", log.String())
	if d.Path != filepath.Join(in.Dir(), "root.ext4") || d.ClaudeSHA256 != in.SHA256 {
		t.Errorf("disk %+v, want root.ext4 beside %s holding sha256 %s", d, in.Path, in.SHA256)
	}
	if out, err := exec.Command("e2fsck", "-fn", d.Path).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", d.Path, err, out)
	}
	for path, want := range map[string]string{
		GuestPath:                             `Mode:\s+0755\s.*\n(.*\n)?User:\s+0\s+Group:\s+0\s+Project:.*Size: ` + strconv.FormatInt(in.Size, 10) + `\b`,
		"/usr/bin/bash":                       `Type: regular`,
		"/usr/bin/ls":                         `Type: regular`,
		"/bin":                                `Type: symlink`,
		"/etc/ssl/certs/ca-certificates.crt":  `Type: regular`,
		"/home/voidbox":                       `User:\s+1000\s+Group:\s+1000`,
		"/usr/lib/x86_64-linux-gnu/libc.so.6": `Type: regular`,
	} {
		out, _ := exec.Command("debugfs", "-R", "stat "+path, d.Path).CombinedOutput()
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("debugfs stat %s: want %s, got\n%s", path, want, out)
		}
	}
	if out, _ := exec.Command("debugfs", "-R", "cat /etc/passwd", d.Path).Output(); !strings.Contains(string(out), "\nvoidbox:x:1000:1000:voidbox stage user:/home/voidbox:/bin/bash\n") {
		t.Errorf("/etc/passwd has no stage user:\n%s", out)
	}

	// Run it: the disk mounted read-only in a private mount namespace, as the
	// guest does, with a fresh /proc (claude reads /proc/self/exe).
	mnt := t.TempDir()
	script := `set -e
mount -o loop,ro "$1" "$2"
mount -t proc proc "$2/proc"
mount -t tmpfs tmpfs "$2/tmp"
exec chroot --userspec=1000:1000 "$2" /usr/bin/env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin \
	DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
	/bin/bash -c 'claude --version; id -un; ls /usr/local/bin'`
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", d.Path, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("running claude in the root disk: %v\n%s", err, out)
	}
	if want := DefaultVersion + " (Claude Code)\nvoidbox\nclaude\n"; string(out) != want {
		t.Errorf("in the root disk: %q, want %q", out, want)
	}

	again, err := RootDisk(context.Background(), in, RootDiskOptions{})
	if err != nil || !again.Built.Equal(d.Built) {
		t.Errorf("second RootDisk = %+v, %v; want the cached disk built at %s", again, err, d.Built)
	}
	list, err := List(filepath.Dir(in.Dir()))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range list {
		found = found || (e.Version == in.Version && e.RootDisk == d.Path && e.Problem == "")
	}
	if !found {
		t.Errorf("List = %+v, want %s with its root disk", list, in.Version)
	}
}
