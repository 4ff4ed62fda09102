package llmproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// slowStream is a provider's streamed body that sends one event, then blocks until the
// request is cancelled, and then takes a while to give up, as a connection's teardown may.
type slowStream struct {
	ctx  context.Context
	sent bool
}

func (s *slowStream) Read(p []byte) (int, error) {
	if !s.sent {
		s.sent = true
		return copy(p, "event: ping\ndata: {\"type\":\"ping\"}\n\n"), nil
	}
	<-s.ctx.Done()
	time.Sleep(300 * time.Millisecond)
	return 0, s.ctx.Err()
}

func (s *slowStream) Close() error { return nil }

type slowTransport struct{}

func (slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1, Request: r,
		Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: &slowStream{ctx: r.Context()},
	}, nil
}

func TestServeWaitsForStreamsWhenItStops(t *testing.T) {
	p, url := newProxy(t, Config{BaseURL: "https://api.anthropic.com", Transport: slowTransport{}})
	resp, err := http.Post(url+"/v1/messages", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	s := finalStats(t, p) // stops Serve with the stream open
	if s.Requests != 1 || s.Status[200] != 1 || s.BytesOut == 0 {
		t.Errorf("stats once Serve returned %+v; want the open stream counted (1 request, a 200, its bytes)", s)
	}
}

func TestRequestBodyLimit(t *testing.T) {
	up := newUpstream(t, nil)
	p, url := newProxy(t, Config{BaseURL: up.URL, MaxBodyBytes: 1024})
	atLimit := strings.Repeat("a", 1024)
	over := strings.Repeat("a", 1025)

	if resp, b := post(t, url+"/v1/messages", atLimit, nil); resp.StatusCode != 200 {
		t.Fatalf("a body of exactly the limit: status %d (%s), want 200", resp.StatusCode, b)
	}
	// with a Content-Length: refused before anything is sent on
	resp, b := post(t, url+"/v1/messages", over, nil)
	if typ, msg := errorOf(t, b); resp.StatusCode != 413 || typ != "request_too_large" || !strings.Contains(msg, "1024") {
		t.Errorf("a 1025-byte body: %d %s %q; want 413 request_too_large naming the 1024-byte limit", resp.StatusCode, typ, msg)
	}
	// chunked, so the size shows only while it streams
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", io.MultiReader(strings.NewReader(over)))
	req.ContentLength = -1
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if typ, _ := errorOf(t, string(b2)); resp2.StatusCode != 413 || typ != "request_too_large" {
		t.Errorf("a chunked 1025-byte body: %d %s, want 413 request_too_large", resp2.StatusCode, b2)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for i, body := range up.body {
		if len(body) > 1024 {
			t.Errorf("provider request %d got a %d-byte body; at most 1024 may pass", i, len(body))
		}
	}
	if s := finalStats(t, p); s.Status[413] != 2 || s.Refused != 2 {
		t.Errorf("stats %+v; want two 413s counted as refused", s)
	}
}

func TestRequestHeaderLimit(t *testing.T) {
	up := newUpstream(t, nil)
	p, err := New(Config{BaseURL: up.URL, APIKey: testKey, MaxHeaderBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader("{}"))
	req.Header.Set("X-Big", strings.Repeat("b", 2000))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, req)
	if typ, msg := errorOf(t, w.Body.String()); w.Code != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(msg, "1024") {
		t.Errorf("2000-byte header: %d %s %q; want 431 naming the 1024-byte limit", w.Code, typ, msg)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("provider got %d requests", n)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, "{}")
	})
	_, url := newProxy(t, Config{BaseURL: up.URL, MaxConcurrent: 1})
	done := make(chan int)
	go func() {
		resp, _ := post(t, url+"/v1/messages", "{}", nil)
		done <- resp.StatusCode
	}()
	<-arrived
	resp, body := post(t, url+"/v1/messages", "{}", nil)
	if typ, _ := errorOf(t, body); resp.StatusCode != 429 || typ != "rate_limit_error" {
		t.Errorf("second request in flight: %d %s, want 429 rate_limit_error", resp.StatusCode, body)
	}
	close(release)
	if got := <-done; got != 200 {
		t.Errorf("first request: %d, want 200", got)
	}
}

func TestStatsCountBytes(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "0123456789") })
	p, url := newProxy(t, Config{BaseURL: up.URL})
	post(t, url+"/v1/messages", "abcde", nil)
	post(t, url+"/v1/messages", "fgh", nil)
	s := finalStats(t, p)
	if s.Requests != 2 || s.BytesIn != 8 || s.BytesOut != 20 || s.Status[200] != 2 || s.LastProviderError != nil {
		t.Errorf("stats %+v; want 2 requests, 8 bytes in, 20 out, two 200s, no provider error", s)
	}
}
