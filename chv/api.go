package chv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// apiRoot is where Cloud Hypervisor serves its REST API on the unix socket.
// The host part of the URL is ignored by the server; "localhost" matches the
// server URL of the published OpenAPI description.
const apiRoot = "http://localhost/api/v1"

// maxResponseBody bounds what we read from the VMM: the server caps bodies at
// 4 MiB, and a misbehaving peer must not make us buffer without limit.
const maxResponseBody = 4 << 20

// APIError is a non-2xx answer from Cloud Hypervisor's REST API. Chain is the
// error chain the server sent (a JSON array of strings, outermost first).
type APIError struct {
	Method string
	Path   string // e.g. "/api/v1/vm.create"
	Status int
	Chain  []string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chv: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if len(e.Chain) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Chain, ": "))
	}
	return b.String()
}

// notRunning reports whether the error says the VM is not created or not
// running: the answer to vm.shutdown when the guest already powered off.
func (e *APIError) notRunning() bool {
	if e.Status == http.StatusNotFound {
		return true
	}
	for _, m := range e.Chain {
		m = strings.ToLower(m)
		if strings.Contains(m, "not running") || strings.Contains(m, "not booted") ||
			strings.Contains(m, "not created") {
			return true
		}
	}
	return false
}

// parseErrorBody turns an error response body into an error chain. Cloud
// Hypervisor sends a JSON array of strings; anything else (an empty body for a
// 400 on a bad method, or a proxy's text) is quoted as one trimmed message.
func parseErrorBody(body []byte) []string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var chain []string
	if err := json.Unmarshal(body, &chain); err == nil {
		out := chain[:0]
		for _, m := range chain {
			if m = strings.TrimSpace(m); m != "" {
				out = append(out, m)
			}
		}
		return out
	}
	const maxQuote = 512
	s := strings.ToValidUTF8(string(body), "?")
	if len(s) > maxQuote {
		s = s[:maxQuote] + "..."
	}
	return []string{s}
}

// client speaks HTTP/1.1 to one Cloud Hypervisor API socket.
type client struct {
	socket string
	http   *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// One request at a time and a process that may vanish: a pooled
		// connection to a dead VMM would only turn into a confusing EOF.
		DisableKeepAlives: true,
	}
	return &client{socket: socket, http: &http.Client{Transport: tr}}
}

// call sends one request. in (if non-nil) is the JSON body; out (if non-nil)
// receives a 200 body. Errors name the call; API errors are *APIError.
func (c *client) call(ctx context.Context, method, endpoint string, in, out any) error {
	path := "/api/v1/" + endpoint
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("chv: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, apiRoot+"/"+endpoint, body)
	if err != nil {
		return fmt.Errorf("chv: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("chv: %s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return fmt.Errorf("chv: %s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Chain: parseErrorBody(data)}
	}
	if out == nil {
		return nil
	}
	if resp.StatusCode != http.StatusOK || len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("chv: %s %s: expected a JSON body, got %d with %d bytes", method, path, resp.StatusCode, len(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("chv: %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// PingInfo is the answer to GET /api/v1/vmm.ping.
type PingInfo struct {
	Version      string   `json:"version"`
	BuildVersion string   `json:"build_version,omitempty"`
	PID          int64    `json:"pid,omitempty"`
	Features     []string `json:"features,omitempty"`
}

func (c *client) ping(ctx context.Context) (PingInfo, error) {
	var p PingInfo
	if err := c.call(ctx, http.MethodGet, "vmm.ping", nil, &p); err != nil {
		return PingInfo{}, err
	}
	if p.Version == "" {
		return PingInfo{}, fmt.Errorf("chv: GET /api/v1/vmm.ping: response has no version")
	}
	return p, nil
}

// vmInfo is the part of GET /api/v1/vm.info the driver reads.
type vmInfo struct {
	State string `json:"state"`
}

func (c *client) info(ctx context.Context) (vmInfo, error) {
	var i vmInfo
	err := c.call(ctx, http.MethodGet, "vm.info", nil, &i)
	return i, err
}

func (c *client) put(ctx context.Context, endpoint string, in any) error {
	return c.call(ctx, http.MethodPut, endpoint, in, nil)
}

// waitPing polls vmm.ping until it answers, the process exits (exited is
// closed) or the deadline passes. The last error says why it did not answer.
func (c *client) waitPing(ctx context.Context, exited <-chan struct{}) (PingInfo, error) {
	tick := time.NewTicker(15 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		p, err := c.ping(pctx)
		cancel()
		if err == nil {
			return p, nil
		}
		// A server that answers with an error will not get better by asking
		// again; only "not listening yet" is worth waiting out.
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			return PingInfo{}, err
		}
		last = err
		select {
		case <-ctx.Done():
			return PingInfo{}, fmt.Errorf("api socket %s did not answer vmm.ping in time (%w); last error: %v", c.socket, ctx.Err(), last)
		case <-exited:
			return PingInfo{}, fmt.Errorf("cloud-hypervisor exited before its api socket answered; last error: %v", last)
		case <-tick.C:
		}
	}
}
