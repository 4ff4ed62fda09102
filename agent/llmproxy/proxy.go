// Package llmproxy is the host side of an agent box's LLM access: a credential proxy that the
// guest's claude-code uses as its ANTHROPIC_BASE_URL. The guest holds only a placeholder key;
// the proxy drops whatever credential a request carries, adds the real one, and forwards the
// request to the box's own provider and nowhere else. The key never enters the VM.
//
// What it forwards is narrow on purpose: only the API calls claude-code makes (POST
// /v1/messages, POST /v1/messages/count_tokens, GET /v1/models and /v1/models/ID; anything else
// is a 403 with an Anthropic-style JSON error), to the configured base URL with the request's
// path appended. The request's Host header and an absolute-form request URL are ignored, so a
// guest cannot aim the proxy at another host. Hop-by-hop headers are dropped both ways, request
// bodies (32 MiB) and headers (64 KiB) are bounded, responses stream through as they arrive
// (Server-Sent Events are flushed event by event, never buffered whole), and the key is masked
// out of response headers and bodies, so even a provider that echoes it cannot hand it to the
// guest. A provider's error replies pass through with their status; a provider that cannot be
// reached is a 502 naming its host. Stats counts requests, bytes and status codes, and keeps
// the provider's last error for the stage's result.
//
// The proxy does not decide where it listens: the VM side gives Serve a listener that only that
// box's VM can reach.
package llmproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// AuthStyle is how the real key is presented to the provider.
type AuthStyle string

const (
	AuthXAPIKey AuthStyle = "x-api-key" // Anthropic's API: "x-api-key: KEY"
	AuthBearer  AuthStyle = "bearer"    // "Authorization: Bearer KEY" (gateways, custom providers)
	AuthNone    AuthStyle = "none"      // no credential (a local Ollama)
)

// Defaults for Config's limits.
const (
	DefaultMaxBodyBytes   = 32 << 20
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxConcurrent  = 32
)

// Config is one box's proxy.
type Config struct {
	// BaseURL is the provider's API root: https://api.anthropic.com, Ollama's
	// http://127.0.0.1:11434, or a custom gateway (a path prefix is kept: the request's path
	// is appended to it). It must be http or https with a host and no user info, query or
	// fragment.
	BaseURL string
	// APIKey is the real key. Required unless AuthStyle is AuthNone.
	APIKey string
	// AuthStyle is how APIKey is sent; empty is AuthXAPIKey.
	AuthStyle AuthStyle
	// Log gets one line per request (method, path, status, bytes, duration; never a header
	// or the key); nil discards them.
	Log *slog.Logger
	// Transport reaches the provider; nil is a transport like http.DefaultTransport's (the
	// host's proxy environment applies).
	Transport http.RoundTripper
	// MaxBodyBytes bounds a request body; 0 is DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds a request's header names and values together; 0 is
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxConcurrent bounds requests in flight; more get a 429. 0 is DefaultMaxConcurrent.
	MaxConcurrent int
}

// Proxy is a credential proxy for one provider. It is an http.Handler; its methods are safe
// for concurrent use.
type Proxy struct {
	base     *url.URL
	key      string
	auth     AuthStyle
	log      *slog.Logger
	maxBody  int64
	maxHead  int
	slots    chan struct{}
	reverse  *httputil.ReverseProxy
	counters counters
}

// New checks cfg and returns its proxy.
func New(cfg Config) (*Proxy, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	auth := cfg.AuthStyle
	if auth == "" {
		auth = AuthXAPIKey
	}
	switch auth {
	case AuthXAPIKey, AuthBearer:
		if cfg.APIKey == "" {
			return nil, fmt.Errorf("llmproxy: auth style %q needs an API key, and the key is empty", auth)
		}
		if strings.ContainsAny(cfg.APIKey, "\r\n\x00") {
			return nil, errors.New("llmproxy: the API key contains a line break or NUL byte, which no HTTP header can carry")
		}
	case AuthNone:
	default:
		return nil, fmt.Errorf("llmproxy: auth style %q; want %q, %q or %q", auth, AuthXAPIKey, AuthBearer, AuthNone)
	}
	p := &Proxy{
		base:    base,
		key:     cfg.APIKey,
		auth:    auth,
		log:     cfg.Log,
		maxBody: cfg.MaxBodyBytes,
		maxHead: cfg.MaxHeaderBytes,
	}
	if auth == AuthNone {
		p.key = "" // a key that is never sent has nothing to hide
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	if p.maxHead <= 0 {
		p.maxHead = DefaultMaxHeaderBytes
	}
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = DefaultMaxConcurrent
	}
	p.slots = make(chan struct{}, n)
	transport := cfg.Transport
	if transport == nil {
		transport = defaultTransport()
	}
	p.reverse = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transport,
		FlushInterval:  -1, // pass every chunk on as it arrives, whatever the content type
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.proxyError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// parseBaseURL checks a provider's base URL and strips a trailing slash from its path.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("llmproxy: provider base URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("llmproxy: provider base URL %q: scheme %q; want http or https", raw, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("llmproxy: provider base URL %q has no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("llmproxy: provider base URL %q has user info; give the key as the API key instead", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("llmproxy: provider base URL %q has a query or fragment; want scheme://host[:port][/path]", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// defaultTransport is http.DefaultTransport's settings with bounded connection set-up; no
// overall timeout, since a long non-streaming reply may take minutes to start.
func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 15 * time.Second
	t.MaxResponseHeaderBytes = 1 << 20
	return t
}

// Provider is the host (and port, when it has one) the proxy forwards to.
func (p *Proxy) Provider() string { return p.base.Host }

// Serve serves the proxy on ln until ctx ends or ln fails. When ctx ends it closes ln and
// every connection, streams included, waits for the requests in progress to finish (so
// Stats is final once Serve returns), and returns nil.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	active := &handlers{}
	active.idle.L = &active.mu
	srv := &http.Server{
		Handler:           active.track(p),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    p.maxHead,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	_ = srv.Close()
	active.closeAndWait()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("llmproxy: serving on %s: %w", ln.Addr(), err)
}

// handlers counts the requests a server is handling, so that Serve can wait for them.
type handlers struct {
	mu     sync.Mutex
	idle   sync.Cond
	n      int
	closed bool
}

func (a *handlers) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return // the server is shutting down; the connection is closed already
		}
		a.n++
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			a.n--
			if a.n == 0 {
				a.idle.Broadcast()
			}
			a.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

func (a *handlers) closeAndWait() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for a.n > 0 {
		a.idle.Wait()
	}
}

// ServeHTTP forwards one request from the guest to the provider, or refuses it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	body := &countingBody{ReadCloser: http.MaxBytesReader(rec, r.Body, p.maxBody)}
	defer func() {
		in := body.n.Load()
		p.counters.record(rec.status, in, rec.bytes)
		p.log.LogAttrs(r.Context(), slog.LevelInfo, "llm proxy request",
			slog.String("method", r.Method), slog.String("path", textfmt.Clip(r.URL.Path, 200, "...")),
			slog.Int("status", rec.status), slog.Int64("bytes_in", in), slog.Int64("bytes_out", rec.bytes),
			slog.Duration("duration", time.Since(start)))
	}()
	if reason := p.refuse(r); reason != nil {
		p.counters.refused.Add(1)
		p.writeError(rec, reason.status, reason.errorType, reason.message)
		return
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	default:
		p.counters.refused.Add(1)
		p.writeError(rec, http.StatusTooManyRequests, "rate_limit_error",
			fmt.Sprintf("voidbox llm proxy: more than %d requests in flight", cap(p.slots)))
		return
	}
	r.Body = body
	// An Upgrade would turn the exchange into a raw tunnel to the provider; none of the
	// allowed calls needs one.
	r.Header.Del("Upgrade")
	r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
	p.reverse.ServeHTTP(rec, r)
}

// refusal is why a request is answered by the proxy itself.
type refusal struct {
	status    int
	errorType string
	message   string
}

// refuse says why r is not forwarded, or nil.
func (p *Proxy) refuse(r *http.Request) *refusal {
	if !allowed(r.Method, r.URL) {
		return &refusal{http.StatusForbidden, "permission_error",
			fmt.Sprintf("voidbox llm proxy: %s %s is not an API call this proxy forwards (allowed: %s)",
				r.Method, textfmt.Clip(r.URL.Path, 200, "..."), allowedList)}
	}
	if n := headerBytes(r.Header); n > p.maxHead {
		return &refusal{http.StatusRequestHeaderFieldsTooLarge, "invalid_request_error",
			fmt.Sprintf("voidbox llm proxy: request headers are %d bytes; at most %d are forwarded", n, p.maxHead)}
	}
	if r.ContentLength > p.maxBody {
		return &refusal{http.StatusRequestEntityTooLarge, "request_too_large",
			fmt.Sprintf("voidbox llm proxy: request body is %d bytes; at most %d are forwarded", r.ContentLength, p.maxBody)}
	}
	return nil
}

// headerBytes is the size of h's names and values, as a server counts them.
func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF
		}
	}
	return n
}

// rewrite aims the outbound request at the provider: the base URL with the request's path
// appended (never the request's own host), with the guest's credentials replaced by the key.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	out.URL = &url.URL{
		Scheme:   p.base.Scheme,
		Host:     p.base.Host,
		Path:     p.base.Path + pr.In.URL.Path,
		RawQuery: pr.In.URL.RawQuery,
	}
	out.Host = ""
	h := out.Header
	for _, name := range []string{"X-Api-Key", "Authorization", "Proxy-Authorization", "Cookie", "Upgrade"} {
		h.Del(name)
	}
	// The transport asks for gzip itself and hands back the decompressed body, which the key
	// scrubber can read; an encoding the guest asked for would pass through unreadable.
	h.Del("Accept-Encoding")
	switch p.auth {
	case AuthXAPIKey:
		h.Set("X-Api-Key", p.key)
	case AuthBearer:
		h.Set("Authorization", "Bearer "+p.key)
	}
}

// proxyError answers a request the provider did not answer: a body over the limit is a 413,
// anything else (the provider unreachable, a reply the proxy refuses) a 502 naming the
// provider's host.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if body, _ := r.Context().Value(bodyKey{}).(*countingBody); body != nil && body.tooLarge() {
		p.counters.refused.Add(1)
		p.writeError(w, http.StatusRequestEntityTooLarge, "request_too_large",
			fmt.Sprintf("voidbox llm proxy: request body is over %d bytes; at most %d are forwarded", p.maxBody, p.maxBody))
		return
	}
	if r.Context().Err() != nil {
		return // the guest went away; nobody reads an answer
	}
	p.counters.upstreamErrors.Add(1)
	p.log.Warn("llm proxy: no reply from the provider", "provider", p.base.Host, "error", mask(err.Error(), p.key))
	p.writeError(w, http.StatusBadGateway, "api_error",
		fmt.Sprintf("voidbox llm proxy: no reply from the provider %s: %v", p.base.Host, err))
}

// writeError answers with Anthropic's error body, which claude-code shows as the reason.
func (p *Proxy) writeError(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorJSON(errorType, mask(message, p.key)))
}
