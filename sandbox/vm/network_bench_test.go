package vm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/network"
	"github.com/voidbox/voidbox/runtime"
)

// benchBlob is what each throughput iteration moves from the host to the guest.
const benchBlob = 8 << 20

// connects is how many TCP connects one latency iteration makes from the guest.
const connects = 20

// BenchmarkNetwork measures guest-to-host TCP through each attachment, beside the same
// transfer over the host's loopback in the same run:
//
//	go test -run '^$' -bench Network -benchtime 3x ./sandbox/vm
//
// throughput: the guest fetches benchBlob bytes over HTTP (busybox wget) from a server on
// 127.0.0.1 reached through the policy; MB/s is the transfer as the guest saw it. connect:
// the guest opens and closes connects TCP connections (busybox nc, a process each);
// "ms/connect" subtracts the same loop against a closed port on the guest's own loopback,
// so what is left is the connect through voidbox's network.
func BenchmarkNetwork(b *testing.B) {
	blob := strings.Repeat("v", benchBlob)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, blob) }))
	defer srv.Close()
	b.Run("throughput/host-loopback", func(b *testing.B) {
		b.SetBytes(benchBlob)
		for range b.N {
			resp, err := http.Get(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != benchBlob {
				b.Fatalf("read %d bytes", n)
			}
		}
	})
	vmtest.Require(b)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	closer := closeServer(b)
	up := &testUpstream{
		names: map[string][]netip.Addr{"blob.example.test": {netip.MustParseAddr("203.0.113.30")}},
		route: map[string]string{"203.0.113.30:80": "127.0.0.1:" + port, "203.0.113.31:80": closer},
	}
	for _, at := range []struct {
		name    string
		forward bool
	}{{"nic", false}, {"forwarder", true}} {
		img := vmtest.Image(b)
		p, err := New(Options{VMM: vmtest.TCG(b), Kernel: img.Kernel, Initramfs: img.Initramfs, NetForwarder: at.forward,
			Network: network.Config{Resolver: up, Dialer: up}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		sb, err := p.Open(ctx, runtime.SandboxSpec{Name: "bench-" + at.name, MemoryMB: 256, Network: true, Egress: []string{"blob.example.test:80", "203.0.113.31:80"}})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		s := sb.(*Sandbox)
		b.Run("throughput/"+at.name, func(b *testing.B) {
			b.SetBytes(benchBlob)
			for range b.N {
				out := benchSh(b, s, "wget -q -O - http://blob.example.test/ | wc -c")
				if strings.TrimSpace(out) != fmt.Sprint(benchBlob) {
					b.Fatalf("guest received %q bytes", out)
				}
			}
		})
		b.Run("connect/"+at.name, func(b *testing.B) {
			loop := func(dst string) time.Duration {
				start := time.Now()
				benchSh(b, s, fmt.Sprintf("i=0; while [ $i -lt %d ]; do nc -w 2 %s </dev/null >/dev/null 2>&1; i=$((i+1)); done; echo ok", connects, dst))
				return time.Since(start)
			}
			var through, local time.Duration
			for range b.N {
				through += loop("203.0.113.31 80")
				local += loop("127.0.0.1 1")
			}
			per := float64(through-local) / float64(b.N*connects) / 1e6
			b.ReportMetric(per, "ms/connect")
			b.ReportMetric(float64(local)/float64(b.N*connects)/1e6, "ms/local-baseline")
		})
		s.Close()
	}
}

// closeServer accepts TCP connections on 127.0.0.1 and closes each at once.
func closeServer(b *testing.B) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func benchSh(b *testing.B, s *Sandbox, script string) string {
	b.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := s.Exec(ctx, runtime.ExecRequest{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: io.Discard})
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("exec %q: exit %d, %v (%q)", script, res.ExitCode, err, out.String())
	}
	return out.String()
}
