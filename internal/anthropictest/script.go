// Package anthropictest is a scripted Anthropic Messages API for tests: an HTTP server on
// 127.0.0.1 that answers POST /v1/messages from a per-test list of turns, streamed in
// Server-Sent Events exactly as Anthropic's API streams them (message_start, one
// content_block_start/delta/stop run per text or tool_use block, message_delta with the stop
// reason and usage, message_stop) or as one JSON message when the request does not ask to
// stream. It also answers /v1/messages/count_tokens and /v1/models, and records every request
// (headers and body) so a test can assert what the client sent: the API key, the system prompt,
// the tool_result of the previous turn.
//
// It is a test-support package, not a _test file, so that the suites of other packages (the
// credential proxy, the vm sandbox's agent stages) can drive the real claude-code binary with it.
package anthropictest

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Script is what a server answers, in order: the n-th POST /v1/messages gets Turns[n]. Once
// the turns are used up every further request gets Then, or, when Then is nil, a 400
// invalid_request_error naming the request's number (a 400 because clients retry a 5xx, so a
// test that ran out of script would otherwise wait through the retries).
type Script struct {
	Turns []Turn
	Then  *Turn
	// Model is the model the replies name; empty echoes the request's model.
	Model string
}

// Turn is one reply: the assistant's content blocks, or, when Status is set, an API error.
type Turn struct {
	Blocks []Block
	// StopReason is message_delta's stop_reason; empty is "tool_use" when a block is a
	// tool_use and "end_turn" otherwise.
	StopReason string
	// Status, when not 0, makes the turn an error reply with this HTTP status and Anthropic's
	// error body {"type":"error","error":{"type":ErrorType,"message":ErrorMessage}}.
	Status       int
	ErrorType    string
	ErrorMessage string
}

// Block is one content block of a reply: Type "text" with Text, or "tool_use" with Name and
// Input (a JSON object). ID is a tool_use block's id; empty gets a fresh "toolu_..." one.
type Block struct {
	Type  string
	Text  string
	ID    string
	Name  string
	Input json.RawMessage
}

// Reply is a turn made of blocks.
func Reply(blocks ...Block) Turn { return Turn{Blocks: blocks} }

// Text is a text block.
func Text(s string) Block { return Block{Type: "text", Text: s} }

// ToolUse is a tool_use block calling the tool name with input, which must marshal to a
// JSON object; anything else is a bug in the test, reported when the block is served.
func ToolUse(name string, input any) Block {
	raw, err := json.Marshal(input)
	if err != nil {
		raw = nil
	}
	return Block{Type: "tool_use", Name: name, Input: raw}
}

// Bash is claude-code's Bash tool running command.
func Bash(command string) Block {
	return ToolUse("Bash", map[string]string{"command": command, "description": "scripted by anthropictest"})
}

// Write is claude-code's Write tool writing content to the absolute path filePath.
func Write(filePath, content string) Block {
	return ToolUse("Write", map[string]string{"file_path": filePath, "content": content})
}

// Error is a turn that fails with status and Anthropic's error type and message, such as
// Error(401, "authentication_error", "invalid x-api-key").
func Error(status int, errorType, message string) Turn {
	return Turn{Status: status, ErrorType: errorType, ErrorMessage: message}
}

// stopReason is the turn's message_delta stop_reason.
func (t Turn) stopReason() string {
	if t.StopReason != "" {
		return t.StopReason
	}
	for _, b := range t.Blocks {
		if b.Type == "tool_use" {
			return "tool_use"
		}
	}
	return "end_turn"
}

// check says what is wrong with a scripted turn, so a broken script fails the request with a
// message instead of sending the client something Anthropic never would.
func (t Turn) check() error {
	if t.Status != 0 {
		if t.Status < 400 || t.Status > 599 {
			return fmt.Errorf("error turn status %d: want 400 to 599", t.Status)
		}
		return nil
	}
	for i, b := range t.Blocks {
		switch b.Type {
		case "text":
		case "tool_use":
			if b.Name == "" {
				return fmt.Errorf("block %d: tool_use without a tool name", i)
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(b.Input, &obj); err != nil || obj == nil {
				return fmt.Errorf("block %d: tool_use %s input %q is not a JSON object", i, b.Name, b.Input)
			}
		default:
			return fmt.Errorf("block %d: type %q; want \"text\" or \"tool_use\"", i, b.Type)
		}
	}
	return nil
}

// errorBody is Anthropic's error response body; an empty errorType is the one Anthropic
// gives status.
func errorBody(status int, errorType, message string) []byte {
	if errorType == "" {
		errorType = statusErrorType(status)
	}
	body, _ := json.Marshal(map[string]any{
		"type":  "error",
		"error": map[string]string{"type": errorType, "message": message},
	})
	return body
}

// statusErrorType is the error type Anthropic's API gives a status.
func statusErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case 529:
		return "overloaded_error"
	default:
		return "api_error"
	}
}
