package snapshot

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Checksums are CRC-32C (hardware-accelerated here) over the file's non-zero 4 KiB
// blocks, each with its offset. They are for corruption (a truncated copy, a disk error,
// a half-written file), not for tampering: whoever can write the 0700 store can run as
// its owner anyway. sha256 was measured at a few hundred MB/s on these machines, which a
// guest memory file of hundreds of MiB would add to every warm start; skipping zero
// blocks (and the file's holes, found with SEEK_DATA) makes the sum independent of how
// sparse the file system stored it, and cheap: a freshly booted guest has touched a
// fraction of its memory.

const blockSize = 4096

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileChecksum returns the checksum of the file at path and its size.
func fileChecksum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	size := st.Size()
	h := crc32.New(castagnoli)
	buf := make([]byte, 1<<20)
	var off [8]byte
	zero := make([]byte, blockSize)
	pos := int64(0)
	for pos < size {
		data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			// A file system without SEEK_DATA: read everything.
			data = pos
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		// Whole blocks, aligned to the file whatever the extent boundaries: pos is
		// always a block boundary (or the end), so no block is summed twice.
		start := max(data&^(blockSize-1), pos)
		end := min((hole+blockSize-1)&^(blockSize-1), size)
		for start < end {
			n := min(int64(len(buf)), end-start)
			got, err := f.ReadAt(buf[:n], start)
			if err != nil && !errors.Is(err, io.EOF) {
				return "", 0, fmt.Errorf("read %s at %d: %w", path, start, err)
			}
			if got == 0 {
				return "", 0, fmt.Errorf("read %s at %d: the file shrank while being checked", path, start)
			}
			for i := 0; i < got; i += blockSize {
				block := buf[i:min(i+blockSize, got)]
				if string(block) == string(zero[:len(block)]) {
					continue
				}
				binary.LittleEndian.PutUint64(off[:], uint64(start)+uint64(i))
				h.Write(off[:])
				h.Write(block)
			}
			start += int64(got)
		}
		pos = max(end, pos+blockSize)
	}
	binary.LittleEndian.PutUint64(off[:], uint64(size))
	h.Write(off[:])
	return "crc32c:" + hex.EncodeToString(h.Sum(nil)), size, nil
}
