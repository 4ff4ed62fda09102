package network

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// The benchmarks measure the host half alone (a fake guest netstack over a socketpair, no
// VM): guest-to-host TCP throughput and connect latency through the policy and forwarders.

func sinkServer(b *testing.B) string {
	return localServer(b, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

func BenchmarkGuestToHostTCP(b *testing.B) {
	for _, mtu := range []int{DefaultMTU, 9000, 65000} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) {
			e := newEnv(b, []string{"203.0.113.1:9"}, func(c *Config) { c.MTU = mtu })
			e.dialer.route("203.0.113.1:9", sinkServer(b))
			c, err := e.g.dial("203.0.113.1:9", 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConnect(b *testing.B) {
	e := newEnv(b, []string{"203.0.113.1:9"}, func(c *Config) { c.Limits.FlowsPerSecond = 1 << 20 })
	e.dialer.route("203.0.113.1:9", sinkServer(b))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := e.g.dial("203.0.113.1:9", 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
