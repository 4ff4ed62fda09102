package llmproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// Stats is what a proxy has done so far.
type Stats struct {
	Requests       int64         // requests from the guest whose reply has ended, refused ones included
	Refused        int64         // answered by the proxy itself: path not allowed, too large, too many in flight
	UpstreamErrors int64         // requests the provider did not answer (a 502)
	BytesIn        int64         // request body bytes read from the guest
	BytesOut       int64         // response body bytes written to the guest
	Status         map[int]int64 // replies by status code; 0 counts requests whose guest went away first
	// LastProviderError is the provider's last error reply (status 400 or more), nil when
	// there was none.
	LastProviderError *ProviderError
}

// ProviderError is an error reply from the provider: its status and, when the body is
// Anthropic's error JSON, its type and message (the key masked).
type ProviderError struct {
	Status  int
	Type    string
	Message string
}

func (e *ProviderError) Error() string {
	switch {
	case e.Type != "" && e.Message != "":
		return fmt.Sprintf("provider answered %d %s: %s", e.Status, e.Type, e.Message)
	case e.Message != "":
		return fmt.Sprintf("provider answered %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("provider answered %d %s", e.Status, http.StatusText(e.Status))
}

type counters struct {
	requests, refused, upstreamErrors, bytesIn, bytesOut atomic.Int64

	mu        sync.Mutex
	status    map[int]int64
	lastError *ProviderError
}

func (c *counters) record(status int, in, out int64) {
	c.requests.Add(1)
	c.bytesIn.Add(in)
	c.bytesOut.Add(out)
	c.mu.Lock()
	if c.status == nil {
		c.status = map[int]int64{}
	}
	c.status[status]++
	c.mu.Unlock()
}

func (c *counters) providerError(e *ProviderError) {
	c.mu.Lock()
	c.lastError = e
	c.mu.Unlock()
}

// Stats returns the proxy's counts so far.
func (p *Proxy) Stats() Stats {
	c := &p.counters
	s := Stats{
		Requests: c.requests.Load(), Refused: c.refused.Load(), UpstreamErrors: c.upstreamErrors.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Status: map[int]int64{},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.status {
		s.Status[k] = v
	}
	if c.lastError != nil {
		e := *c.lastError
		s.LastProviderError = &e
	}
	return s
}

// modifyResponse checks the provider's reply before it goes to the guest: headers that carry
// the key are dropped, the body is passed through the key scrubber, and an error reply's
// first bytes are kept for Stats.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") && scrubbing(p.key) {
		return fmt.Errorf("the reply is %s-encoded, which the proxy did not ask for and cannot check for the key", enc)
	}
	if scrubbing(p.key) {
		for name, values := range resp.Header {
			for _, v := range values {
				if strings.Contains(v, p.key) {
					p.log.Warn("llm proxy dropped a provider reply header that carried the API key", "header", name)
					resp.Header.Del(name)
					break
				}
			}
		}
		resp.Body = newScrubReader(resp.Body, p.key)
	}
	if resp.StatusCode >= 400 {
		resp.Body = &errorCapture{ReadCloser: resp.Body, status: resp.StatusCode, done: p.counters.providerError}
	}
	return nil
}

// errorCapture keeps the first bytes of an error reply as it passes and reports them as a
// ProviderError when the body ends.
type errorCapture struct {
	io.ReadCloser
	status   int
	head     bytes.Buffer
	done     func(*ProviderError)
	reported bool
}

const errorCaptureBytes = 8 << 10

func (e *errorCapture) Read(p []byte) (int, error) {
	n, err := e.ReadCloser.Read(p)
	if room := errorCaptureBytes - e.head.Len(); room > 0 {
		e.head.Write(p[:min(n, room)])
	}
	if err != nil {
		e.report()
	}
	return n, err
}

func (e *errorCapture) Close() error {
	e.report()
	return e.ReadCloser.Close()
}

func (e *errorCapture) report() {
	if e.reported {
		return
	}
	e.reported = true
	pe := &ProviderError{Status: e.status}
	var body struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(e.head.Bytes(), &body) == nil {
		pe.Type, pe.Message = textfmt.Clip(body.Error.Type, 100, "..."), textfmt.Clip(body.Error.Message, 1000, "...")
	} else {
		pe.Message = textfmt.Clip(strings.TrimSpace(e.head.String()), 1000, "...")
	}
	e.done(pe)
}

// recorder notes the status and body bytes of the reply to the guest. Unwrap lets
// http.ResponseController reach the connection's Flush.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	late   http.Header
}

// Header is the reply's header until it is sent. After that, what is set would go out as
// trailers, which arrive past the key check in modifyResponse and which the API does not
// use: they go to a map nobody sends.
func (r *recorder) Header() http.Header {
	if r.status != 0 {
		if r.late == nil {
			r.late = http.Header{}
		}
		return r.late
	}
	return r.ResponseWriter.Header()
}

// WriteHeader passes the final status on. Informational (1xx) replies the provider sends
// before it are not forwarded: their headers would reach the guest without the key check
// in modifyResponse, and claude-code needs none of them.
func (r *recorder) WriteHeader(status int) {
	if status < 200 {
		return
	}
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// bodyKey is the context key under which ServeHTTP leaves the request's countingBody for
// proxyError.
type bodyKey struct{}

// countingBody counts the request body bytes read and remembers whether the limit was hit.
type countingBody struct {
	io.ReadCloser
	n    atomic.Int64
	over atomic.Bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		c.over.Store(true)
	}
	return n, err
}

func (c *countingBody) tooLarge() bool { return c.over.Load() }
