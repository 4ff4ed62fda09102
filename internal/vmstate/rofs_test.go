package vmstate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyExport runs a writer under the wrapper: its writes to the exported
// directory fail with EROFS, the directory is unchanged, and the host's mount table
// (outside the wrapper's namespace) is untouched.
func TestReadOnlyExport(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, _, err := ReadOnlyExport("/bin/true", nil, t.TempDir()); err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Fatalf("as non-root: %v, want a refusal that says root is needed", err)
		}
		t.Skip("the read-only bind mount needs root; refusal checked")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kept"), []byte("original"), 0o644)
	prog, args, err := ReadOnlyExport("/bin/sh", []string{"-c", `echo changed > "$0/kept"; touch "$0/new"; echo done`, dir}, dir)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(prog, args...).CombinedOutput()
	if !strings.Contains(string(out), "Read-only file system") || !strings.Contains(string(out), "done") {
		t.Errorf("writer output %q: want EROFS for its writes, then its last line", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kept")); string(b) != "original" {
		t.Errorf("kept is %q after the read-only run", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Error("a file was created in the read-only export")
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("the read-only bind mount leaked into the host's mount namespace:\n%s", mounts)
	}
	if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("host write"), 0o644); err != nil {
		t.Errorf("the host can no longer write its own directory: %v", err)
	}
}
