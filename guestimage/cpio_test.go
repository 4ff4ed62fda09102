package guestimage

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sampleArchive(t *testing.T, reverse bool) *Archive {
	t.Helper()
	a := NewArchive()
	adds := []func() error{
		func() error { return a.AddFile("/init", []byte("#!/bin/busybox sh\necho hi\n"), 0o755) },
		func() error { return a.AddFile("/lib/modules/6.1/kernel/a.ko", []byte("abc"), 0o644) },
		func() error { return a.AddSymlink("/bin/sh", "/bin/busybox") },
		func() error { return a.AddFile("/bin/busybox", bytes.Repeat([]byte{0x7f}, 1001), 0o755) },
		func() error { return a.AddDir("/tmp", os.ModeSticky|0o777) },
		func() error { return a.AddCharDevice("/dev/console", 0o600, 5, 1) },
	}
	if reverse {
		for i, j := 0, len(adds)-1; i < j; i, j = i+1, j-1 {
			adds[i], adds[j] = adds[j], adds[i]
		}
	}
	for _, add := range adds {
		if err := add(); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestArchiveDeterministic(t *testing.T) {
	var one, two bytes.Buffer
	if err := sampleArchive(t, false).Write(&one); err != nil {
		t.Fatal(err)
	}
	if err := sampleArchive(t, true).Write(&two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("same entries added in a different order gave different archives")
	}
	if one.Len()%4 != 0 {
		t.Fatalf("archive length %d is not 4-byte aligned", one.Len())
	}
	if !bytes.HasPrefix(one.Bytes(), []byte("070701")) {
		t.Fatalf("archive does not start with the newc magic: %q", one.Bytes()[:6])
	}
	// The first entry is "bin" with inode 1, mode 040755, uid/gid 0, nlink 2, mtime 0.
	wantHdr := "070701" + "00000001" + "000041ED" + "00000000" + "00000000" + "00000002" + "00000000"
	if got := one.String()[:len(wantHdr)]; got != wantHdr {
		t.Fatalf("first header = %s, want %s", got, wantHdr)
	}
}

func TestArchiveReadableByGNUCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("needs GNU cpio (apt-get install cpio) to cross-check the format")
	}
	var buf bytes.Buffer
	if err := sampleArchive(t, false).Write(&buf); err != nil {
		t.Fatal(err)
	}
	list := exec.Command(cpio, "-t", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	want := "bin\nbin/busybox\nbin/sh\ndev\ndev/console\ninit\nlib\nlib/modules\nlib/modules/6.1\nlib/modules/6.1/kernel\nlib/modules/6.1/kernel/a.ko\ntmp\n"
	if string(out) != want {
		t.Fatalf("cpio -t listed\n%s\nwant\n%s", out, want)
	}

	dir := t.TempDir()
	extract := exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := extract.CombinedOutput(); err != nil && !strings.Contains(string(out), "dev/console") {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil || string(got) != "#!/bin/busybox sh\necho hi\n" {
		t.Fatalf("extracted /init = %q, %v", got, err)
	}
	st, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("extracted /init mode = %v, %v; want 0755", st.Mode(), err)
	}
	if bb, err := os.ReadFile(filepath.Join(dir, "bin/busybox")); err != nil || len(bb) != 1001 {
		t.Fatalf("extracted busybox: %d bytes, %v; want 1001", len(bb), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "/bin/busybox" {
		t.Fatalf("bin/sh -> %q, %v", target, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("tmp mode %v, %v; want sticky", st.Mode(), err)
	}
}

func TestArchiveRejectsBadPaths(t *testing.T) {
	a := NewArchive()
	for _, p := range []string{"relative", "/", "/a/../b", "/a//b"} {
		if err := a.AddFile(p, nil, 0o644); err == nil {
			t.Errorf("AddFile(%q) succeeded, want an error", p)
		}
	}
	if err := a.AddFile("/x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.AddFile("/x", nil, 0o644); err == nil {
		t.Error("adding /x twice succeeded")
	}
	if err := a.AddFile("/x/y", nil, 0o644); err == nil {
		t.Error("adding a file under the regular file /x succeeded")
	}
}
