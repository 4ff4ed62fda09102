// Package frame is the wire format between a guest NIC and voidbox's user-mode network: each
// Ethernet frame is preceded by its length as a 4-byte big-endian integer. It is QEMU's
// `-netdev stream` framing, and the guest agent's TAP forwarder (over a vsock or virtio-serial
// port) uses it too, so one reader serves both attachments. The package has no dependencies
// beyond the standard library so that the guest agent can import it without the netstack.
//
// The length comes from the guest and is hostile: Reader refuses a length outside
// [MinLen, max] before reading or allocating anything, so a guest cannot make the host
// allocate more than one maximum-sized buffer, nor hand a short frame to code that indexes an
// Ethernet header.
package frame

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
)

// HeaderLen is the size of the length prefix.
const HeaderLen = 4

// MinLen is the smallest frame accepted: an Ethernet header (two MAC addresses and a type).
const MinLen = 14

// Reader reads length-prefixed frames with a bound on their length.
type Reader struct {
	r   *bufio.Reader
	max int
	hdr [HeaderLen]byte
}

// NewReader reads frames of at most max bytes (not counting the prefix) from r.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next reads the next frame into buf, which must hold max bytes, and returns the frame (a
// prefix of buf). It returns io.EOF at a clean end of stream between frames, and an error that
// names the length when the prefix is out of bounds; the stream cannot be resynchronised after
// that, so the caller should drop the connection.
func (r *Reader) Next(buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("frame: stream ended inside a length prefix")
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(r.hdr[:])
	if n < MinLen || uint64(n) > uint64(r.max) {
		return nil, fmt.Errorf("frame: length %d out of bounds (a frame is %d to %d bytes: an Ethernet header plus at most the MTU)", n, MinLen, r.max)
	}
	if len(buf) < int(n) {
		return nil, fmt.Errorf("frame: buffer of %d bytes is smaller than the %d-byte frame (give Next a buffer of the reader's max)", len(buf), n)
	}
	if _, err := io.ReadFull(r.r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("frame: reading a %d-byte frame: %w", n, err)
	}
	return buf[:n], nil
}

// Write writes one frame with its length prefix in a single gathered write, so that the
// prefix and the frame are never split by a short write that returns without an error.
// Callers that share w between goroutines must serialise calls.
func Write(w io.Writer, f []byte) error {
	if uint64(len(f)) > math.MaxUint32 {
		return fmt.Errorf("frame: %d bytes do not fit a 4-byte length prefix", len(f))
	}
	var hdr [HeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
	bufs := net.Buffers{hdr[:], f}
	_, err := bufs.WriteTo(w)
	return err
}
