package anthropictest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// maxBody bounds a request body the server reads; Anthropic's own limit is 32 MB.
const maxBody = 64 << 20

// defaultModel is the model the models list names when the script names none.
const defaultModel = "claude-sonnet-4-5-20250929"

// Server is a scripted Messages API on 127.0.0.1, closed when the test ends.
type Server struct {
	URL  string // http://127.0.0.1:PORT, for ANTHROPIC_BASE_URL
	Addr string // 127.0.0.1:PORT

	script Script
	srv    *httptest.Server

	mu       sync.Mutex
	requests []Request
	turns    int // POST /v1/messages requests answered so far
	ids      int // the last message or tool_use id handed out
}

// New starts a server answering from script. A script that could not be served (a tool_use
// without a name or with an input that is not a JSON object, an error turn without an error
// status) fails the test here.
func New(t testing.TB, script Script) *Server {
	t.Helper()
	for i, turn := range script.Turns {
		if err := turn.check(); err != nil {
			t.Fatalf("anthropictest: script turn %d: %v", i, err)
		}
	}
	if script.Then != nil {
		if err := script.Then.check(); err != nil {
			t.Fatalf("anthropictest: script Then: %v", err)
		}
	}
	s := &Server{script: script}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	s.Addr = strings.TrimPrefix(s.srv.URL, "http://")
	return s
}

// Requests returns every request received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// MessageRequests returns the POST /v1/messages requests received so far, in arrival order:
// MessageRequests()[n] was answered from Script.Turns[n].
func (s *Server) MessageRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Turn >= 0 {
			out = append(out, r)
		}
	}
	return out
}

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("anthropictest: reading the request body: %v", err))
		return
	}
	req := Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, Turn: -1}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		s.messages(w, req)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		s.record(req)
		writeJSON(w, http.StatusOK, map[string]int{"input_tokens": estimateTokens(len(body))})
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		s.record(req)
		writeJSON(w, http.StatusOK, s.models())
	default:
		s.record(req)
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("anthropictest: no API at %s %s", r.Method, r.URL.Path))
	}
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
}

// messages answers POST /v1/messages with the script's next turn.
func (s *Server) messages(w http.ResponseWriter, req Request) {
	s.mu.Lock()
	req.Turn = s.turns
	s.turns++
	s.requests = append(s.requests, req)
	turn, ok := s.turn(req.Turn)
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_request_error",
			fmt.Sprintf("anthropictest: the script has %d turns and no Then; this is request %d", len(s.script.Turns), req.Turn+1))
		return
	}
	if turn.Status != 0 {
		writeError(w, turn.Status, turn.ErrorType, turn.ErrorMessage)
		return
	}
	m, err := req.Messages()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	model := s.script.Model
	if model == "" {
		model = m.Model
	}
	reply := s.build(turn, model, estimateTokens(len(req.Body)))
	if m.Stream {
		streamMessage(w, reply)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// turn is the answer to the n-th messages request; s.mu is held.
func (s *Server) turn(n int) (Turn, bool) {
	if n < len(s.script.Turns) {
		return s.script.Turns[n], true
	}
	if s.script.Then != nil {
		return *s.script.Then, true
	}
	return Turn{}, false
}

// message is a Messages API response: the whole message, or, streamed, what the events build.
type message struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Role         string         `json:"role"`
	Model        string         `json:"model"`
	Content      []contentBlock `json:"content"`
	StopReason   *string        `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        usage          `json:"usage"`
}

type contentBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// build makes the reply message of a content turn, with fresh ids.
func (s *Server) build(turn Turn, model string, inputTokens int) message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids++
	stop := turn.stopReason()
	msg := message{
		ID: fmt.Sprintf("msg_anthropictest%06d", s.ids), Type: "message", Role: "assistant", Model: model,
		Content: []contentBlock{}, StopReason: &stop, Usage: usage{InputTokens: inputTokens},
	}
	out := 0
	for _, b := range turn.Blocks {
		switch b.Type {
		case "text":
			text := b.Text
			msg.Content = append(msg.Content, contentBlock{Type: "text", Text: &text})
			out += len(text)
		case "tool_use":
			id := b.ID
			if id == "" {
				s.ids++
				id = fmt.Sprintf("toolu_anthropictest%06d", s.ids)
			}
			msg.Content = append(msg.Content, contentBlock{Type: "tool_use", ID: id, Name: b.Name, Input: b.Input})
			out += len(b.Input)
		}
	}
	msg.Usage.OutputTokens = estimateTokens(out)
	return msg
}

// models is GET /v1/models: the one model the script names.
func (s *Server) models() map[string]any {
	model := s.script.Model
	if model == "" {
		model = defaultModel
	}
	return map[string]any{
		"data": []map[string]string{{
			"type": "model", "id": model, "display_name": model, "created_at": "2025-09-29T00:00:00Z",
		}},
		"has_more": false, "first_id": model, "last_id": model,
	}
}

// estimateTokens is a token count of n bytes of text: about four bytes a token, at least 1.
func estimateTokens(n int) int {
	return n/4 + 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", fmt.Sprintf("anthropictest: encoding the reply: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_anthropictest")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_anthropictest")
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(status, errorType, message))
}
