// Package ocitest is what the tests of oci, oci/unpack and the voidbox
// command share to exercise images: tar layers, including the malformed and
// malicious ones no ordinary tool writes, images built from them, and an
// in-memory registry on 127.0.0.1 to push them to.
package ocitest

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// Entry is a tar entry; Type defaults to a regular file.
type Entry struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
	UID, GID         int
	// Size, when larger than len(Body), is what the header claims: the
	// stream then ends right after that header (a truncated or lying layer).
	Size int64
}

// File is a regular file with mode 0644.
func File(name, body string) Entry {
	return Entry{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o644}
}

// Dir is a directory with mode 0755.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }

// Symlink is a symbolic link name -> to.
func Symlink(name, to string) Entry {
	return Entry{Name: name, Link: to, Type: tar.TypeSymlink, Mode: 0o777}
}

// Hardlink is a hard link name to the archive path to.
func Hardlink(name, to string) Entry {
	return Entry{Name: name, Link: to, Type: tar.TypeLink, Mode: 0o644}
}

// Tar writes entries as an uncompressed tar stream.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.Body))
		if e.Size > size {
			size = e.Size
		}
		if typ != tar.TypeReg {
			size = 0
		}
		hdr := &tar.Header{Name: e.Name, Linkname: e.Link, Typeflag: typ, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			Size: size, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.Name, err)
		}
		if size > int64(len(e.Body)) {
			return buf.Bytes()
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatalf("tar body %s: %v", e.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar close: %v", err)
	}
	return buf.Bytes()
}
