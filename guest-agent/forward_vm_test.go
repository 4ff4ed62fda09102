package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// TestForwardInRealVM boots a VM with no network and two forwards, serves one of them
// from the host (an HTTP server on the host's loopback, standing in for the LLM
// proxy), and checks from a stage that the forward is its way to that server, both
// ways and in bulk, while the unserved forward and every other port lead nowhere and
// the VM still has no interface but lo.
func TestForwardInRealVM(t *testing.T) {
	img := vmtest.Image(t)
	vmm := vmtest.TCG(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(body))
		mu.Unlock()
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(big)
		case "/v1/messages":
			fmt.Fprintf(w, "echo:%s\n", body)
		default:
			fmt.Fprintln(w, "hello from the host's llm proxy")
		}
	}))
	defer srv.Close()

	boot := proto.BootConfig{Forwards: []proto.Forward{{Name: "llm", Port: 4000}, {Name: "other", Port: 4002}}}
	m, client := bootWith(t, vmm, img, boot, runtime.VMConfig{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- client.ServeForwards(ctx, map[string]proto.Dialer{"llm": func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		}})
	}()

	out := stageRun(ctx, t, client, nil, `ls /sys/class/net
wget -q -O - http://127.0.0.1:4000/
wget -q -O - --post-data 'prompt=hi' http://127.0.0.1:4000/v1/messages
wget -q -O - http://127.0.0.1:4000/big | md5sum | cut -d' ' -f1
wget -q -O - http://127.0.0.1:4002/ >/dev/null 2>&1 || echo other-refused
wget -q -O - http://127.0.0.1:4001/ >/dev/null 2>&1 || echo no-such-forward
true`)
	want := fmt.Sprintf("lo\nhello from the host's llm proxy\necho:prompt=hi\n%x\nother-refused\nno-such-forward\n", md5.Sum(big))
	if out != want {
		t.Errorf("a stage through the forwards printed\n%q\nwant\n%q", out, want)
	}
	mu.Lock()
	if got := strings.Join(seen, "|"); got != "GET / |POST /v1/messages prompt=hi|GET /big " {
		t.Errorf("the host's server saw %q", got)
	}
	mu.Unlock()
	if s := client.ForwardStats(); s.Served != 3 || s.Refused != 1 || s.DialFailed != 0 {
		t.Errorf("host forward stats %+v, want 3 served and the unserved forward refused once", s)
	}
	console := m.ConsoleTail(64 << 10)
	for _, want := range []string{"forward llm: 127.0.0.1:4000 to the host", "forward other: 127.0.0.1:4002 to the host",
		`forward other: refused by the host: forward "other" is not served by the host (it serves llm)`} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if err := client.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	client.Close() // as voidbox does once the guest acknowledged
	waitPoweroff(t, m, "after the shutdown request")
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeForwards when the session ended = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("ServeForwards did not return when the session ended")
	}
	if console := m.ConsoleTail(64 << 10); !strings.Contains(console, "forward llm (127.0.0.1:4000): 3 connection(s), 0 closed over the limit of 64, 0 ended with an error") {
		t.Errorf("console lacks the llm forward's summary:\n%s", console)
	}
}
