package llmproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testKey     = "sk-ant-real-key-0123456789abcdef"
	placeholder = "sk-voidbox-placeholder"
)

// upstream is a provider stand-in that records what reached it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.body = append(u.body, b)
		u.mu.Unlock()
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"type":"message","content":[]}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// serving maps each proxy a test serves to the function that stops it.
var serving sync.Map

// serve starts p on a 127.0.0.1 listener, as the VM side would, and returns its base URL.
// The test's end, or finalStats, stops it.
func serve(t *testing.T, p *Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve after cancel: %v", err)
			}
		})
	}
	serving.Store(p, stop)
	t.Cleanup(stop)
	return "http://" + ln.Addr().String()
}

// finalStats stops serving p and returns its Stats, which are final once Serve returned.
func finalStats(t *testing.T, p *Proxy) Stats {
	t.Helper()
	stop, ok := serving.Load(p)
	if !ok {
		t.Fatal("finalStats of a proxy serve did not start")
	}
	stop.(func())()
	return p.Stats()
}

func newProxy(t *testing.T, cfg Config) (*Proxy, string) {
	t.Helper()
	if cfg.APIKey == "" && cfg.AuthStyle != AuthNone {
		cfg.APIKey = testKey
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return p, serve(t, p)
}

func post(t *testing.T, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// errorOf decodes Anthropic's error body, failing the test when body is not one.
func errorOf(t *testing.T, body string) (typ, msg string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Type != "error" {
		t.Fatalf("body %q is not an Anthropic error (%v)", body, err)
	}
	return e.Error.Type, e.Error.Message
}

func TestKeyReplacesGuestCredentials(t *testing.T) {
	for _, tc := range []struct {
		auth       AuthStyle
		wantAPIKey string
		wantAuth   string
	}{
		{AuthXAPIKey, testKey, ""},
		{"", testKey, ""},
		{AuthBearer, "", "Bearer " + testKey},
		{AuthNone, "", ""},
	} {
		t.Run(string(tc.auth), func(t *testing.T) {
			up := newUpstream(t, nil)
			_, url := newProxy(t, Config{BaseURL: up.URL, AuthStyle: tc.auth})
			resp, _ := post(t, url+"/v1/messages?beta=true", `{"model":"m"}`, map[string]string{
				"X-Api-Key": placeholder, "Authorization": "Bearer " + placeholder,
				"Proxy-Authorization": "Basic eDp5", "Cookie": "session=guest", "Anthropic-Version": "2023-06-01",
			})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			reqs := up.requests()
			if len(reqs) != 1 {
				t.Fatalf("provider got %d requests, want 1", len(reqs))
			}
			h := reqs[0].Header
			if got := h.Get("X-Api-Key"); got != tc.wantAPIKey {
				t.Errorf("provider's x-api-key = %q, want %q", got, tc.wantAPIKey)
			}
			if got := h.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("provider's Authorization = %q, want %q", got, tc.wantAuth)
			}
			for _, name := range []string{"Proxy-Authorization", "Cookie"} {
				if got := h.Get(name); got != "" {
					t.Errorf("provider got the guest's %s %q; want it dropped", name, got)
				}
			}
			if got := h.Get("Anthropic-Version"); got != "2023-06-01" {
				t.Errorf("provider's anthropic-version = %q; API headers must pass through", got)
			}
			if got := reqs[0].URL.RequestURI(); got != "/v1/messages?beta=true" {
				t.Errorf("provider got %s, want /v1/messages?beta=true", got)
			}
		})
	}
}

func TestBaseURLPathPrefix(t *testing.T) {
	up := newUpstream(t, nil)
	_, url := newProxy(t, Config{BaseURL: up.URL + "/gateway/anthropic/"})
	post(t, url+"/v1/messages/count_tokens", `{}`, nil)
	reqs := up.requests()
	if len(reqs) != 1 || reqs[0].URL.Path != "/gateway/anthropic/v1/messages/count_tokens" {
		t.Fatalf("provider got %v; want one request to /gateway/anthropic/v1/messages/count_tokens", reqs)
	}
}

// rawRequest sends text over a fresh TCP connection to addr and returns the reply's status
// line.
func rawRequest(t *testing.T, addr, text string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the reply to %q: %v", text, err)
	}
	return strings.TrimSpace(line)
}

func TestRequestCannotRedirectToAnotherHost(t *testing.T) {
	provider := newUpstream(t, nil)
	evil := newUpstream(t, nil)
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	_, url := newProxy(t, Config{BaseURL: provider.URL})
	addr := strings.TrimPrefix(url, "http://")

	body := `{"model":"m"}`
	for _, text := range []string{
		// absolute-form request target naming another host
		fmt.Sprintf("POST http://%s/v1/messages HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", evilHost, evilHost, len(body), body),
		// origin-form with a Host header naming another host
		fmt.Sprintf("POST /v1/messages HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", evilHost, len(body), body),
	} {
		if got := rawRequest(t, addr, text); got != "HTTP/1.1 200 OK" {
			t.Errorf("reply to %q: %q, want 200 from the provider", text, got)
		}
	}
	for _, text := range []string{
		"CONNECT " + evilHost + " HTTP/1.1\r\nHost: " + evilHost + "\r\n\r\n",
		"GET //" + evilHost + "/v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /v1/models/../../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /v1/models/%2e%2e%2fx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	} {
		if got := rawRequest(t, addr, text); !strings.HasPrefix(got, "HTTP/1.1 403") && !strings.HasPrefix(got, "HTTP/1.1 400") {
			t.Errorf("reply to %q: %q, want 403 (or 400 from the HTTP server)", text, got)
		}
	}
	if n := len(evil.requests()); n != 0 {
		t.Errorf("the other host got %d requests; want none", n)
	}
	if n := len(provider.requests()); n != 2 {
		t.Errorf("the provider got %d requests, want the 2 allowed ones", n)
	}
}

func TestOnlyClaudeCodeAPICallsAreForwarded(t *testing.T) {
	up := newUpstream(t, nil)
	p, url := newProxy(t, Config{BaseURL: up.URL})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/v1/messages", 200},
		{"POST", "/v1/messages/count_tokens", 200},
		{"GET", "/v1/models", 200},
		{"GET", "/v1/models/claude-sonnet-4-5", 200},
		{"GET", "/v1/messages", 403},
		{"POST", "/v1/complete", 403},
		{"DELETE", "/v1/models/x", 403},
		{"GET", "/v1/models/", 403},
		{"GET", "/api/oauth/profile", 403},
		{"POST", "/v1/messages/batches", 403},
		{"GET", "/v1/files", 403},
		{"POST", "/v1/messages/", 403},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.path, resp.StatusCode, tc.want, b)
			continue
		}
		if tc.want == 403 {
			typ, msg := errorOf(t, string(b))
			if typ != "permission_error" || !strings.Contains(msg, tc.path) || !strings.Contains(msg, "POST /v1/messages") {
				t.Errorf("%s %s: error %s %q; want permission_error naming the path and the allowed calls", tc.method, tc.path, typ, msg)
			}
		}
	}
	if n := len(up.requests()); n != 4 {
		t.Errorf("provider got %d requests, want the 4 allowed ones", n)
	}
	if s := finalStats(t, p); s.Refused != 8 || s.Status[403] != 8 || s.Status[200] != 4 || s.Requests != 12 {
		t.Errorf("stats %+v; want 12 requests, 8 refused with 403, 4 with 200", s)
	}
}

func TestHopByHopHeadersAreDropped(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Provider-Hop")
		w.Header().Set("X-Provider-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Request-Id", "req_1")
		fmt.Fprint(w, "{}")
	})
	_, url := newProxy(t, Config{BaseURL: up.URL})
	resp, _ := post(t, url+"/v1/messages", "{}", map[string]string{
		"Connection": "X-Guest-Hop", "X-Guest-Hop": "1", "Keep-Alive": "timeout=5", "Upgrade": "websocket", "Te": "gzip",
	})
	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("provider got %d requests, want 1", len(reqs))
	}
	h := reqs[0].Header
	for _, name := range []string{"X-Guest-Hop", "Keep-Alive", "Upgrade", "Te"} {
		if v := h.Get(name); v != "" {
			t.Errorf("provider got hop-by-hop header %s: %q", name, v)
		}
	}
	if v := h.Get("Connection"); strings.Contains(v, "X-Guest-Hop") || strings.Contains(strings.ToLower(v), "upgrade") {
		t.Errorf("provider got Connection: %q", v)
	}
	for _, name := range []string{"X-Provider-Hop", "Keep-Alive"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("guest got hop-by-hop header %s: %q", name, v)
		}
	}
	if resp.Header.Get("Request-Id") != "req_1" {
		t.Errorf("guest lost the provider's Request-Id header: %v", resp.Header)
	}
}

func TestSSEStreamsIncrementally(t *testing.T) {
	firstRead := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message_start\ndata: {\"type\":\"message_start\"}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-firstRead: // the guest has the first event before the second exists
		case <-time.After(10 * time.Second):
			return
		}
		fmt.Fprint(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	})
	_, url := newProxy(t, Config{BaseURL: up.URL})
	resp, err := http.Post(url+"/v1/messages", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s: the proxy holds the stream back")
		}
		return ""
	}
	if l := next(); l != "event: message_start" {
		t.Fatalf("first line %q", l)
	}
	next()
	next()
	close(firstRead)
	if l := next(); l != "event: message_stop" {
		t.Fatalf("second event starts with %q", l)
	}
}

func TestProviderErrorsPassThrough(t *testing.T) {
	for _, tc := range []struct {
		status  int
		typ     string
		message string
	}{
		{401, "authentication_error", "invalid x-api-key"},
		{500, "api_error", "Internal server error"},
		{529, "overloaded_error", "Overloaded"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			want := string(errorJSON(tc.typ, tc.message))
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, want)
			})
			p, url := newProxy(t, Config{BaseURL: up.URL})
			resp, body := post(t, url+"/v1/messages", "{}", nil)
			if resp.StatusCode != tc.status || body != want {
				t.Errorf("guest got %d %q, want %d %q", resp.StatusCode, body, tc.status, want)
			}
			s := finalStats(t, p)
			if s.Status[tc.status] != 1 {
				t.Errorf("stats %+v; want one %d", s, tc.status)
			}
			e := s.LastProviderError
			if e == nil || e.Status != tc.status || e.Type != tc.typ || e.Message != tc.message {
				t.Errorf("LastProviderError %+v; want %d %s %q", e, tc.status, tc.typ, tc.message)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{BaseURL: "ftp://x", APIKey: testKey}, `scheme "ftp"`},
		{Config{BaseURL: "https://", APIKey: testKey}, "no host"},
		{Config{BaseURL: "https://u:p@api.anthropic.com", APIKey: testKey}, "user info"},
		{Config{BaseURL: "https://api.anthropic.com?x=1", APIKey: testKey}, "query"},
		{Config{BaseURL: "https://api.anthropic.com"}, "needs an API key"},
		{Config{BaseURL: "https://api.anthropic.com", APIKey: "a\nb"}, "line break"},
		{Config{BaseURL: "https://api.anthropic.com", APIKey: testKey, AuthStyle: "basic"}, `auth style "basic"`},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v; want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{BaseURL: "http://127.0.0.1:11434", AuthStyle: AuthNone}); err != nil {
		t.Errorf("Ollama without a key: %v", err)
	}
}
