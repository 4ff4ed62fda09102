package anthropictest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Request is one request the server received, as the client sent it.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	// Turn is the index in Script.Turns this request was answered from (len(Turns) or more
	// for Then), or -1 for a request that takes no turn (count_tokens, models, an unknown path).
	Turn int
}

// Contains reports whether the body holds s, as sent (inside JSON strings, so s should be
// free of quotes, backslashes and control characters).
func (r Request) Contains(s string) bool { return bytes.Contains(r.Body, []byte(s)) }

// Messages decodes the body of a POST /v1/messages request.
func (r Request) Messages() (MessagesRequest, error) {
	var m MessagesRequest
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return MessagesRequest{}, fmt.Errorf("anthropictest: %s %s body is not a Messages request: %w", r.Method, r.Path, err)
	}
	return m, nil
}

// MessagesRequest is the part of a Messages API request body tests look at.
type MessagesRequest struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	Stream    bool            `json:"stream"`
	System    json.RawMessage `json:"system"` // a string or a list of text blocks
	Messages  []Message       `json:"messages"`
	Tools     []Tool          `json:"tools"`
}

// Message is one message of the conversation the client sends.
type Message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or a list of content blocks
}

// Tool is a tool the client offers the model.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// ContentBlock is one block of a message's content.
type ContentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"` // a tool_result's: a string or a list of blocks
	IsError   bool            `json:"is_error,omitempty"`
}

// ToolResult is a tool_result block the client sent back, its content flattened to text.
type ToolResult struct {
	ToolUseID string
	Content   string
	IsError   bool
}

// SystemText is the system prompt as one string: the text of the top-level system field and
// of the messages with role "system" (claude-code 2.1 sends its skill list and context that
// way), joined by newlines.
func (m MessagesRequest) SystemText() string {
	parts := []string{flattenText(m.System)}
	for _, msg := range m.Messages {
		if msg.Role == "system" {
			parts = append(parts, msg.Text())
		}
	}
	return strings.Join(parts, "\n")
}

// ToolNames lists the names of the tools the request offers.
func (m MessagesRequest) ToolNames() []string {
	names := make([]string, len(m.Tools))
	for i, t := range m.Tools {
		names[i] = t.Name
	}
	return names
}

// Blocks is the message's content as blocks; a plain string content is one text block.
func (m Message) Blocks() []ContentBlock {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return []ContentBlock{{Type: "text", Text: s}}
	}
	var blocks []ContentBlock
	_ = json.Unmarshal(m.Content, &blocks)
	return blocks
}

// Text is the message's text blocks joined by newlines.
func (m Message) Text() string {
	return flattenText(m.Content)
}

// ToolResults lists the tool_result blocks of the conversation's last user message: what the
// client reports back from the tool calls of the previous turn.
func (m MessagesRequest) ToolResults() []ToolResult {
	for i := len(m.Messages) - 1; i >= 0; i-- {
		if m.Messages[i].Role != "user" {
			continue
		}
		var out []ToolResult
		for _, b := range m.Messages[i].Blocks() {
			if b.Type == "tool_result" {
				out = append(out, ToolResult{ToolUseID: b.ToolUseID, Content: flattenText(b.Content), IsError: b.IsError})
			}
		}
		return out
	}
	return nil
}

// flattenText is the text of a string or of a list of content blocks (their text fields,
// joined by newlines); anything else is "".
func flattenText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []ContentBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var parts []string
	for _, b := range blocks {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}
