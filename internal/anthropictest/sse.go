package anthropictest

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// streamMessage sends msg as Anthropic's API streams a message: message_start with empty
// content and the input usage, a ping, then per block content_block_start (a text block
// empty, a tool_use block with input {}), its deltas (text_delta pieces, or input_json_delta
// pieces of the input's JSON, the first one empty as the API sends it) and content_block_stop,
// then message_delta with the stop reason and the output usage, and message_stop. Every event
// is flushed as it is written, so a client sees the stream arrive piece by piece.
func streamMessage(w http.ResponseWriter, msg message) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Request-Id", "req_anthropictest")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(event string, data any) bool {
		body, err := json.Marshal(data)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, body); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}

	start := msg
	start.Content = []contentBlock{}
	start.StopReason = nil
	start.Usage.OutputTokens = 1
	if !send("message_start", map[string]any{"type": "message_start", "message": start}) {
		return
	}
	if !send("ping", map[string]string{"type": "ping"}) {
		return
	}
	for i, b := range msg.Content {
		opening := b
		var deltas []map[string]string
		switch b.Type {
		case "text":
			empty := ""
			opening.Text = &empty
			for _, piece := range split(*b.Text) {
				deltas = append(deltas, map[string]string{"type": "text_delta", "text": piece})
			}
		case "tool_use":
			opening.Input = json.RawMessage("{}")
			deltas = append(deltas, map[string]string{"type": "input_json_delta", "partial_json": ""})
			for _, piece := range split(string(b.Input)) {
				deltas = append(deltas, map[string]string{"type": "input_json_delta", "partial_json": piece})
			}
		}
		if !send("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": opening}) {
			return
		}
		for _, d := range deltas {
			if !send("content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": d}) {
				return
			}
		}
		if !send("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}) {
			return
		}
	}
	if !send("message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": msg.StopReason, "stop_sequence": nil},
		"usage": msg.Usage, // cumulative, as the API's current message_delta carries it
	}) {
		return
	}
	send("message_stop", map[string]string{"type": "message_stop"})
}

// split cuts s into up to three pieces at rune boundaries, so that every block arrives in
// more than one delta as real streams do; "" is one empty piece.
func split(s string) []string {
	runes := []rune(s)
	if len(runes) < 3 {
		return []string{s}
	}
	a, b := len(runes)/3, 2*len(runes)/3
	return []string{string(runes[:a]), string(runes[a:b]), string(runes[b:])}
}
