package digest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kernel")
	os.WriteFile(p, []byte("abc"), 0o644)
	c := NewCache(filepath.Join(dir, "digests.json"))
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got, err := c.File(p); err != nil || got != abc {
		t.Fatalf("File = %q, %v", got, err)
	}
	st, err := os.Stat(filepath.Join(dir, "digests.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, mode %v; want it written, 0600", err, st)
	}
	// A cached answer: prove it by changing the recorded digest behind the cache's back.
	entries := c.load()
	abs, _ := filepath.Abs(p)
	e := entries[abs]
	e.SHA256 = "cached"
	entries[abs] = e
	c.save(entries)
	if got, _ := c.File(p); got != "cached" {
		t.Fatalf("File of an unchanged file = %q, want the cached entry", got)
	}
	// Rewritten with the same size and mtime: the change time still tells.
	orig, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	mtime := orig.ModTime()
	os.WriteFile(p, []byte("xyz"), 0o644)
	os.Chtimes(p, mtime, mtime)
	if got, _ := c.File(p); got == "cached" || got == abc {
		t.Fatalf("File of a rewritten file = %q, want its new digest", got)
	}
	// A corrupt cache file costs a hash, not an error.
	os.WriteFile(filepath.Join(dir, "digests.json"), []byte("{not json"), 0o600)
	if got, err := c.File(p); err != nil || got != "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282" {
		t.Fatalf("File with a corrupt cache = %q, %v", got, err)
	}
	if _, err := c.File(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("File of a missing file succeeded")
	}
}
