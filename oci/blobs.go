package oci

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Size bounds for the JSON blobs read into memory.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 8 << 20
)

// parseDigest checks a "sha256:<64 hex>" digest and returns the hex part.
// Only sha256 is accepted: it is what registries use, and the hex part
// becomes a file name, so it must be exactly that.
func parseDigest(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q is not sha256:<64 lower-case hex digits>", d)
	}
	return h, nil
}

// blobPath is where a blob lives; digest must have passed parseDigest.
func (s *Store) blobPath(digest string) string {
	return s.path("blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// readBlob reads a small cached blob, re-checking its digest (manifests and
// configs are what every later check trusts). errIncomplete if absent.
func (s *Store) readBlob(digest string, limit int64) ([]byte, error) {
	if _, err := parseDigest(digest); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", digest, errIncomplete)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s: larger than %d bytes", digest, limit)
	}
	if got := sha256Hex(b); got != digest {
		return nil, fmt.Errorf("cached blob %s holds %s (corrupt cache: voidbox image rm the image and pull again)", digest, got)
	}
	return b, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// putBlob stores r as blob digest, which must be size bytes (size < 0:
// unknown, up to maxSize). The content is verified before it becomes visible.
// onBytes, if set, is called with the running byte count.
func (s *Store) putBlob(digest string, size int64, r io.Reader, onBytes func(int64)) error {
	if _, err := parseDigest(digest); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-*")
	if err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	limit := size
	if limit < 0 {
		limit = maxConfigSize
	}
	w := &countingWriter{w: io.MultiWriter(f, h), onBytes: onBytes}
	if _, err := io.Copy(w, io.LimitReader(r, limit+1)); err != nil {
		return fmt.Errorf("blob %s: download: %w", digest, err)
	}
	if size >= 0 && w.n != size {
		return fmt.Errorf("blob %s: got %d bytes, the manifest says %d", digest, w.n, size)
	}
	if w.n > limit {
		return fmt.Errorf("blob %s: larger than %d bytes", digest, limit)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("blob %s: content has digest %s", digest, got)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	if err := os.Rename(f.Name(), s.blobPath(digest)); err != nil {
		return fmt.Errorf("blob %s: %w", digest, err)
	}
	return nil
}

type countingWriter struct {
	w       io.Writer
	n       int64
	onBytes func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.onBytes != nil {
		c.onBytes(c.n)
	}
	return n, err
}

// openLayer opens a cached layer blob as an uncompressed tar stream. The
// compression is read from the content (gzip and zstd magic numbers), as
// ggcr and containerd do: media types are not always truthful.
func (s *Store) openLayer(digest string) (io.ReadCloser, error) {
	if _, err := parseDigest(digest); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(digest))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("layer %s: gzip: %w", digest, err)
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	case len(magic) == 4 && string(magic) == "\x28\xb5\x2f\xfd":
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("layer %s: zstd: %w", digest, err)
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	}
	return readCloser{br, f.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
