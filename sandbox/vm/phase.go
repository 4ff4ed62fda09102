package vm

import (
	"net"
	"sync"
	"time"
)

// firstWord wraps the agent connection to note when the guest first sent anything:
// under QEMU the host's dial succeeds as soon as QEMU listens, long before the guest
// kernel has booted, so the agent's first handshake bytes are what mark "booted".
// That instant divides a start-up into vm.boot and agent.connect.
type firstWord struct {
	net.Conn
	once sync.Once
	at   time.Time
	mu   sync.Mutex
}

func (c *firstWord) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			c.mu.Lock()
			c.at = time.Now()
			c.mu.Unlock()
		})
	}
	return n, err
}

// spoke is when the guest first sent bytes, or the zero time if it never did.
func (c *firstWord) spoke() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}
