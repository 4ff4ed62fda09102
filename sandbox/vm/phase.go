package vm

import (
	"net"
	"sync/atomic"
	"time"
)

// firstWord wraps the agent connection to note when the guest first sent anything:
// under QEMU the host's dial succeeds as soon as QEMU listens, long before the guest
// kernel has booted, so the agent's first handshake bytes are what mark "booted".
// That instant divides a start-up into vm.boot and agent.connect.
type firstWord struct {
	net.Conn
	at atomic.Pointer[time.Time] // the first byte's time (monotonic); nil until then
}

func (c *firstWord) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.at.Load() == nil {
		now := time.Now()
		c.at.CompareAndSwap(nil, &now)
	}
	return n, err
}

// spoke is when the guest first sent bytes, or the zero time if it never did.
func (c *firstWord) spoke() time.Time {
	if t := c.at.Load(); t != nil {
		return *t
	}
	return time.Time{}
}
