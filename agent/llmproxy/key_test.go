package llmproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func TestUnreachableProviderIs502NamingTheHost(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, url := newProxy(t, Config{BaseURL: "http://" + host})
	resp, body := post(t, url+"/v1/messages", "{}", map[string]string{"X-Api-Key": placeholder})
	typ, msg := errorOf(t, body)
	if resp.StatusCode != http.StatusBadGateway || typ != "api_error" || !strings.Contains(msg, host) {
		t.Errorf("got %d %s %q; want 502 api_error naming %s", resp.StatusCode, typ, msg, host)
	}
	if strings.Contains(body, testKey) || headersContain(resp.Header, testKey) {
		t.Errorf("the 502 carries the key: %v %q", resp.Header, body)
	}
	if s := finalStats(t, p); s.UpstreamErrors != 1 || s.Status[502] != 1 {
		t.Errorf("stats %+v; want one upstream error, one 502", s)
	}
}

func headersContain(h http.Header, s string) bool {
	for k, vs := range h {
		if strings.Contains(k, s) {
			return true
		}
		for _, v := range vs {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

func TestKeyNeverReachesTheGuest(t *testing.T) {
	half := len(testKey) / 2
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// a provider that echoes the credential it got, in every place it can
		got := r.Header.Get("X-Api-Key")
		w.Header().Set("X-Echo", "key="+got)
		w.Header().Set("Content-Type", "text/event-stream")
		switch r.URL.Query().Get("case") {
		case "error":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			fmt.Fprint(w, string(errorJSON("authentication_error", "invalid x-api-key "+got)))
		case "split":
			// the key split across two flushed writes, then twice in one
			fmt.Fprint(w, "data: "+got[:half])
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
			fmt.Fprint(w, got[half:]+" and "+got+got+"\n\n")
		default:
			fmt.Fprintf(w, "data: {\"echo\":%q}\n\n", got)
		}
	})
	p, url := newProxy(t, Config{BaseURL: up.URL})
	for _, c := range []string{"plain", "split", "error"} {
		resp, body := post(t, url+"/v1/messages?case="+c, "{}", map[string]string{"X-Api-Key": placeholder})
		if strings.Contains(body, testKey) || headersContain(resp.Header, testKey) {
			t.Errorf("case %s: the key reached the guest: %v %q", c, resp.Header, body)
		}
		if !strings.Contains(body, strings.Repeat("*", len(testKey))) {
			t.Errorf("case %s: body %q; want the key masked in place", c, body)
		}
	}
	if e := finalStats(t, p).LastProviderError; e == nil || strings.Contains(e.Message, testKey) {
		t.Errorf("LastProviderError %+v; want the 401 with the key masked", e)
	}
}

func TestInformationalRepliesAndTrailersAreNotForwarded(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</hint>; key="+r.Header.Get("X-Api-Key"))
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Echo")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "{}")
		w.Header().Set("X-Echo", r.Header.Get("X-Api-Key"))
	})
	p, url := newProxy(t, Config{BaseURL: up.URL})
	var got1xx []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got1xx = append(got1xx, code)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, url+"/v1/messages", strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got1xx) != 0 {
		t.Errorf("guest got informational replies %v", got1xx)
	}
	if resp.StatusCode != 200 || headersContain(resp.Trailer, testKey) || headersContain(resp.Header, testKey) {
		t.Errorf("status %d, header %v, trailer %v; want 200 without the key", resp.StatusCode, resp.Header, resp.Trailer)
	}
	if s := finalStats(t, p); s.Status[200] != 1 || len(s.Status) != 1 {
		t.Errorf("status counts %v; want one 200 and no 103", s.Status)
	}
}
