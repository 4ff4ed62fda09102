package llmproxy

import (
	"net/http"
	"net/url"
	"strings"
)

// allowedList names the calls the proxy forwards, for the 403's message.
const allowedList = "POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models, GET /v1/models/ID"

// maxQuery bounds a forwarded query string; claude-code sends "beta=true".
const maxQuery = 4096

// allowed reports whether a request is one of the API calls claude-code makes. The path must
// be exactly one of them, as sent: no escapes, dot segments or doubled slashes can reach
// another path on the provider.
func allowed(method string, u *url.URL) bool {
	if u.RawPath != "" || len(u.RawQuery) > maxQuery {
		return false
	}
	switch method {
	case http.MethodPost:
		return u.Path == "/v1/messages" || u.Path == "/v1/messages/count_tokens"
	case http.MethodGet:
		if u.Path == "/v1/models" {
			return true
		}
		id, ok := strings.CutPrefix(u.Path, "/v1/models/")
		return ok && modelID(id)
	}
	return false
}

// modelID reports whether s can be a model's ID: 1 to 128 letters, digits and "._:@-", not
// starting with a dot.
func modelID(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '@' || c == '-':
		default:
			return false
		}
	}
	return true
}
