package agent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var re *proto.RemoteError
	if !errors.As(err, &re) || re.Code != code {
		t.Errorf("%s: err = %v, want code %s", what, err, code)
	}
}

func TestFileRoundTrip(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	ctx := ctxT(t)
	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.ws, "a/b/c.bin")
	if err := e.client.WriteFile(ctx, p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("file content changed in the round trip")
	}
	fi, err := e.client.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name != "c.bin" || fi.Size != int64(len(data)) || fi.Mode != 0o640 || fi.IsDir() {
		t.Errorf("stat = %+v", fi)
	}
	// Relative paths are under the first root; empty files round-trip as empty.
	if err := e.client.WriteFile(ctx, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := e.client.ReadFile(ctx, filepath.Join(e.ws, "empty")); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty file: %q, %v", got, err)
	}
	if err := e.client.Mkdir(ctx, filepath.Join(e.tmp, "x/y/z"), 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := e.client.Stat(ctx, filepath.Join(e.tmp, "x/y/z")); err != nil || !fi.IsDir() {
		t.Errorf("mkdir result: %+v, %v", fi, err)
	}
	if err := e.client.Mkdir(ctx, filepath.Join(e.tmp, "x/y/z"), 0o700); err != nil {
		t.Errorf("mkdir of an existing directory: %v", err)
	}
	_, err = e.client.ReadFile(ctx, filepath.Join(e.ws, "missing"))
	wantCode(t, "read missing", err, proto.CodeNotFound)
	_, err = e.client.ReadFile(ctx, filepath.Join(e.ws, "a"))
	wantCode(t, "read a directory", err, proto.CodeBadPath)
	entries, _ := os.ReadDir(filepath.Join(e.ws, "a/b"))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestFilePathEscapes(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	ctx := ctxT(t)
	if err := os.Symlink("/etc", filepath.Join(e.ws, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../etc/passwd", filepath.Join(e.ws, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(e.ws, "abs")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(e.ws, "../../etc/passwd"),
		"../etc/passwd",
		"/etc/passwd",
		filepath.Dir(e.ws),
		filepath.Join(e.ws, "etc/passwd"),
		filepath.Join(e.ws, "rel"),
		filepath.Join(e.ws, "abs"),
	} {
		_, err := e.client.ReadFile(ctx, p)
		wantCode(t, "read "+p, err, proto.CodeBadPath)
		_, err = e.client.Stat(ctx, p)
		wantCode(t, "stat "+p, err, proto.CodeBadPath)
	}
	for _, p := range []string{"/etc/voidbox-escape", filepath.Join(e.ws, "etc/voidbox-escape"), filepath.Join(e.ws, "etc/sub/x")} {
		err := e.client.WriteFile(ctx, p, []byte("x"), 0o644)
		wantCode(t, "write "+p, err, proto.CodeBadPath)
		err = e.client.Mkdir(ctx, p, 0o755)
		wantCode(t, "mkdir "+p, err, proto.CodeBadPath)
	}
	if _, err := os.Stat("/etc/voidbox-escape"); err == nil {
		t.Fatal("a write escaped to /etc")
	}
	// Writing onto an absolute symlink replaces the link, never its target.
	if err := e.client.WriteFile(ctx, filepath.Join(e.ws, "abs"), []byte("mine"), 0o644); err != nil {
		t.Fatalf("write over a symlink: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(e.ws, "abs")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("symlink was not replaced by a file: %v %v", fi, err)
	}
}

func TestFileFIFODoesNotHang(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	fifo := filepath.Join(e.ws, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.ReadFile(ctxT(t), fifo)
	wantCode(t, "read fifo", err, proto.CodeBadPath)
}
