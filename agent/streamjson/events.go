package streamjson

import (
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"
)

// maxNameBytes bounds a kept tool name or id; claude-code's are a few dozen bytes.
const maxNameBytes = 256

// envelope is what every event shares. Each event is decoded twice, first as an envelope, so
// that an unknown event type whose other fields have unexpected types is ignored, not
// counted as malformed.
type envelope struct {
	Type    *string `json:"type"`
	Subtype string  `json:"subtype"`
}

type initEvent struct {
	Model     string `json:"model"`
	SessionID string `json:"session_id"`
}

type assistantEvent struct {
	SessionID string  `json:"session_id"`
	Parent    *string `json:"parent_tool_use_id"`
	Message   struct {
		Model   string          `json:"model"`
		Content json.RawMessage `json:"content"` // a list of blocks, or a string
	} `json:"message"`
}

type contentBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type resultEvent struct {
	Subtype        string   `json:"subtype"`
	Result         string   `json:"result"`
	IsError        bool     `json:"is_error"`
	TotalCostUSD   float64  `json:"total_cost_usd"`
	NumTurns       float64  `json:"num_turns"`
	DurationMS     float64  `json:"duration_ms"`
	DurationAPIMS  float64  `json:"duration_api_ms"`
	SessionID      string   `json:"session_id"`
	APIErrorStatus *float64 `json:"api_error_status"`
	Usage          struct {
		InputTokens              float64 `json:"input_tokens"`
		OutputTokens             float64 `json:"output_tokens"`
		CacheReadInputTokens     float64 `json:"cache_read_input_tokens"`
		CacheCreationInputTokens float64 `json:"cache_creation_input_tokens"`
	} `json:"usage"`
}

// event handles one non-empty line.
func (p *Parser) event(line []byte) error {
	if line[0] != '{' {
		return fmt.Errorf("not a JSON object (starts with %q)", firstRune(line))
	}
	var env envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return fmt.Errorf("not a JSON event: %v", err)
	}
	if env.Type == nil {
		return fmt.Errorf("JSON object without a \"type\"")
	}
	p.res.Events++
	limited := p.res.Events > p.lim.MaxEvents
	switch *env.Type {
	case "system":
		if env.Subtype == "init" {
			return p.init(line)
		}
	case "assistant":
		if limited {
			return p.countDropped(line)
		}
		return p.assistant(line)
	case "result":
		return p.result(line)
	}
	return nil // user messages, retries, stream events, and types claude-code may add later
}

func (p *Parser) init(line []byte) error {
	var ev initEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return fmt.Errorf("system init event: %v", err)
	}
	p.res.Model = bound(ev.Model)
	p.res.SessionID = bound(ev.SessionID)
	return nil
}

// blocks decodes an assistant event's tool_use blocks.
func blocks(line []byte) (assistantEvent, []contentBlock, error) {
	var ev assistantEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return ev, nil, fmt.Errorf("assistant event: %v", err)
	}
	var content []contentBlock
	if len(ev.Message.Content) > 0 && ev.Message.Content[0] == '[' {
		if err := json.Unmarshal(ev.Message.Content, &content); err != nil {
			return ev, nil, fmt.Errorf("assistant event content: %v", err)
		}
	}
	return ev, content, nil
}

func (p *Parser) assistant(line []byte) error {
	ev, content, err := blocks(line)
	if err != nil {
		return err
	}
	if p.res.Model == "" && ev.Message.Model != "" && ev.Message.Model != "<synthetic>" {
		p.res.Model = bound(ev.Message.Model)
	}
	if p.res.SessionID == "" {
		p.res.SessionID = bound(ev.SessionID)
	}
	for _, b := range content {
		if b.Type != "tool_use" {
			continue
		}
		if b.ID != "" && p.seen[b.ID] {
			continue // the same block printed again
		}
		if len(p.res.ToolCalls) >= p.lim.MaxToolCalls {
			p.res.ToolCallsDropped++
			continue
		}
		call := ToolCall{ID: bound(b.ID), Name: bound(b.Name), Input: b.Input}
		if ev.Parent != nil {
			call.Parent = bound(*ev.Parent)
		}
		if len(b.Input) > p.lim.MaxToolInputBytes || p.inputs+len(b.Input) > p.lim.MaxToolInputTotal {
			call.Input, call.InputTruncated = nil, true
		} else {
			p.inputs += len(b.Input)
		}
		if b.ID != "" {
			p.seen[b.ID] = true
		}
		p.res.ToolCalls = append(p.res.ToolCalls, call)
		if p.opts.OnToolCall != nil {
			p.opts.OnToolCall(call)
		}
	}
	return nil
}

// countDropped counts the tool calls of an assistant event past MaxEvents.
func (p *Parser) countDropped(line []byte) error {
	_, content, err := blocks(line)
	for _, b := range content {
		if b.Type == "tool_use" {
			p.res.ToolCallsDropped++
		}
	}
	return err
}

func (p *Parser) result(line []byte) error {
	var ev resultEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return fmt.Errorf("result event: %v", err)
	}
	r := &p.res
	r.Done = true
	r.Result = ev.Result
	r.IsError = ev.IsError
	r.Subtype = bound(ev.Subtype)
	r.CostUSD = clampFloat(ev.TotalCostUSD)
	r.InputTokens = clampInt(ev.Usage.InputTokens)
	r.OutputTokens = clampInt(ev.Usage.OutputTokens)
	r.CacheReadInputTokens = clampInt(ev.Usage.CacheReadInputTokens)
	r.CacheCreationInputTokens = clampInt(ev.Usage.CacheCreationInputTokens)
	r.Turns = int(min(clampInt(ev.NumTurns), math.MaxInt32))
	r.DurationMS = clampInt(ev.DurationMS)
	r.DurationAPIMS = clampInt(ev.DurationAPIMS)
	r.APIErrorStatus = 0
	if ev.APIErrorStatus != nil {
		r.APIErrorStatus = int(min(clampInt(*ev.APIErrorStatus), 999))
	}
	if ev.SessionID != "" {
		r.SessionID = bound(ev.SessionID)
	}
	return nil
}

// bound cuts s to maxNameBytes at a rune boundary.
func bound(s string) string {
	if len(s) <= maxNameBytes {
		return s
	}
	cut := maxNameBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// firstRune is the line's first character, for a message.
func firstRune(b []byte) string {
	r, _ := utf8.DecodeRune(b)
	return string(r)
}
