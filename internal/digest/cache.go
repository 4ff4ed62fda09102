package digest

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// maxCacheEntries and maxCacheFile bound a Cache's file.
const (
	maxCacheEntries = 64
	maxCacheFile    = 1 << 20
)

// Cache remembers the sha256 of files by their identity (device, inode, size,
// modification and change times) in one JSON file, so that a file hashed once is not
// hashed again while it is unchanged: the guest kernel and initramfs (25 MB) take about
// 0.1 s to hash on a CPU without SHA instructions, on every run that keys a snapshot by
// them. The change time cannot be set by an unprivileged user, so a rewritten file never
// matches its old entry. Failing to read or write the cache file only costs a hash.
type Cache struct {
	path string
}

// NewCache keeps its entries in the file at path (mode 0600).
func NewCache(path string) *Cache { return &Cache{path: path} }

type cacheEntry struct {
	Identity fileIdentity `json:"identity"`
	SHA256   string       `json:"sha256"`
}

type fileIdentity struct {
	Dev, Ino, Size, MtimeNS, CtimeNS int64
}

func identity(path string) (fileIdentity, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileIdentity{}, false
	}
	return fileIdentity{Dev: int64(st.Dev), Ino: int64(st.Ino), Size: st.Size,
		MtimeNS: st.Mtim.Nano(), CtimeNS: st.Ctim.Nano()}, true
}

// File is the hex sha256 of the file at path, from the cache when its identity is the
// one recorded, else hashed (and recorded).
func (c *Cache) File(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	before, ok := identity(abs)
	entries := c.load()
	if e, hit := entries[abs]; ok && hit && e.Identity == before {
		return e.SHA256, nil
	}
	sum, err := File(abs)
	if err != nil {
		return "", err
	}
	// A file that changed while it was hashed is not recorded.
	if after, ok2 := identity(abs); ok && ok2 && after == before {
		if len(entries) >= maxCacheEntries {
			entries = map[string]cacheEntry{}
		}
		entries[abs] = cacheEntry{Identity: before, SHA256: sum}
		c.save(entries)
	}
	return sum, nil
}

func (c *Cache) load() map[string]cacheEntry {
	entries := map[string]cacheEntry{}
	f, err := os.Open(c.path)
	if err != nil {
		return entries
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxCacheFile))
	if err != nil || json.Unmarshal(raw, &entries) != nil {
		return map[string]cacheEntry{}
	}
	return entries
}

// save writes the entries whole, through a temporary file renamed into place, so a
// reader never sees half a file.
func (c *Cache) save(entries map[string]cacheEntry) {
	raw, err := json.Marshal(entries)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".digests-*")
	if err != nil {
		return
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return
	}
	if err := tmp.Close(); err != nil {
		return
	}
	_ = os.Rename(tmp.Name(), c.path)
}
