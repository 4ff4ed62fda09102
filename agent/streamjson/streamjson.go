// Package streamjson reads what claude-code prints with --output-format stream-json
// --verbose: one JSON event per line (a system init event naming the model and session,
// assistant messages whose content holds the tool_use blocks, user messages with their
// tool_results, and a final result event with the answer, is_error, cost, usage, turns and
// timings). It turns them into a Result, and calls back on each tool call as it appears, for
// the live view.
//
// The bytes come from a guest, so they are treated as hostile: a line is at most 16 MiB (a
// longer one is skipped), tool calls and their inputs are bounded, numbers are clamped to
// sane ranges, event types it does not know are ignored, and lines that are not JSON objects
// are counted and described in Result.Problems. Nothing a guest prints makes it panic or
// grow without bound. Strings (the result text, tool names) are kept as sent: clean them
// (package termsafe) before they reach a terminal.
package streamjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// ToolCall is one tool_use block the agent's model asked for.
type ToolCall struct {
	ID    string          // the tool_use id
	Name  string          // the tool, e.g. "Bash", "Write", "mcp__server__tool"
	Input json.RawMessage // the tool's input as sent; nil when InputTruncated
	// InputTruncated says the input was over Limits.MaxToolInputBytes (or the total budget)
	// and was not kept.
	InputTruncated bool
	// Parent is the id of the Task tool call whose subagent made this call; "" for the main
	// agent's own calls.
	Parent string
}

// Result is what a run of claude-code reported.
type Result struct {
	Result                   string  // the final answer, or the error text when IsError
	IsError                  bool    // the run ended in an error (an API error, max turns, ...)
	Subtype                  string  // the result event's subtype: "success", "error_max_turns", ...
	APIErrorStatus           int     // the provider's HTTP status when the run ended on an API error
	CostUSD                  float64 // total_cost_usd, as claude-code computes it
	InputTokens              int64   // usage.input_tokens (not counting the cache)
	OutputTokens             int64
	CacheReadInputTokens     int64
	CacheCreationInputTokens int64
	Turns                    int   // num_turns
	DurationMS               int64 // duration_ms: the whole run
	DurationAPIMS            int64 // duration_api_ms: time spent waiting for the API
	Model                    string
	SessionID                string
	ToolCalls                []ToolCall

	// Done says a result event arrived; without one the agent did not finish.
	Done bool
	// Events counts the JSON events read, Malformed the lines that were not a JSON object
	// with a string "type" (or were too long), and Problems describes the first of them.
	Events    int
	Malformed int
	Problems  []string
	// ToolCallsDropped counts tool calls past Limits.MaxToolCalls, and past MaxEvents, which
	// were not kept.
	ToolCallsDropped int
}

// ErrorText is why a run failed: Result when claude-code gave a text, else its subtype.
func (r Result) ErrorText() string {
	switch {
	case r.Result != "":
		return r.Result
	case r.Subtype != "":
		return fmt.Sprintf("claude-code ended with %s", r.Subtype)
	}
	return "claude-code reported an error without a message"
}

// Limits bound what the parser keeps; a zero field takes its default.
type Limits struct {
	MaxLineBytes      int // 16 MiB: a longer line is skipped and counted as malformed
	MaxEvents         int // 1<<20: past this only result and init events are read
	MaxToolCalls      int // 4096 kept; more are counted in ToolCallsDropped
	MaxToolInputBytes int // 1 MiB per call; a bigger input is dropped (InputTruncated)
	MaxToolInputTotal int // 16 MiB over all calls kept
	MaxProblems       int // 10 problems described
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxLineBytes, 16<<20)
	def(&l.MaxEvents, 1<<20)
	def(&l.MaxToolCalls, 4096)
	def(&l.MaxToolInputBytes, 1<<20)
	def(&l.MaxToolInputTotal, 16<<20)
	def(&l.MaxProblems, 10)
	return l
}

// Options configure a Parser.
type Options struct {
	// OnToolCall, when set, is called with each tool call as its event is read, in the
	// goroutine that writes to the parser; it should return quickly.
	OnToolCall func(ToolCall)
	Limits     Limits
}

// Parser reads stream-json from the bytes written to it, in chunks of any size. It is not
// safe for concurrent use.
type Parser struct {
	opts     Options
	lim      Limits
	res      Result
	line     []byte
	overlong bool // the current line passed MaxLineBytes and is being skipped
	lineNo   int
	seen     map[string]bool // tool_use ids already recorded
	inputs   int             // tool input bytes kept
}

// NewParser returns a parser.
func NewParser(opts Options) *Parser {
	return &Parser{opts: opts, lim: opts.Limits.withDefaults(), seen: map[string]bool{}}
}

// Parse reads r to its end and returns what it held. The error is r's, or, when the stream
// held no result event, one saying so (the Result still has what was read).
func Parse(r io.Reader, opts Options) (Result, error) {
	p := NewParser(opts)
	_, err := io.Copy(p, r)
	res, perr := p.Close()
	if err != nil {
		return res, fmt.Errorf("streamjson: reading claude-code's output: %w", err)
	}
	return res, perr
}

// Write consumes b; it never fails.
func (p *Parser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !p.overlong {
			if len(p.line)+len(chunk) > p.lim.MaxLineBytes {
				p.overlong = true
				p.line = p.line[:0]
			} else {
				p.line = append(p.line, chunk...)
			}
		}
		if i < 0 {
			break
		}
		p.endLine()
		b = b[i+1:]
	}
	return n, nil
}

// ErrNoResult is wrapped by Close's error when the stream ended without a result event.
var ErrNoResult = errors.New("no result event")

// Close reads a last line that has no newline and returns the result.
func (p *Parser) Close() (Result, error) {
	if len(p.line) > 0 || p.overlong {
		p.endLine()
	}
	res := p.res
	res.ToolCalls = append([]ToolCall(nil), p.res.ToolCalls...)
	res.Problems = append([]string(nil), p.res.Problems...)
	if !res.Done {
		err := fmt.Errorf("streamjson: %w in claude-code's output (%d lines, %d events, %d malformed)", ErrNoResult, p.lineNo, res.Events, res.Malformed)
		if len(res.Problems) > 0 {
			err = fmt.Errorf("%w; first problem: %s", err, res.Problems[0])
		}
		return res, err
	}
	return res, nil
}

// endLine handles the line collected so far.
func (p *Parser) endLine() {
	p.lineNo++
	line := bytes.TrimSpace(p.line)
	overlong := p.overlong
	p.line, p.overlong = p.line[:0], false
	if cap(p.line) > 64<<10 {
		p.line = nil // do not keep a huge buffer for the short lines that follow
	}
	switch {
	case overlong:
		p.problem("longer than %d bytes; skipped", p.lim.MaxLineBytes)
	case len(line) > 0:
		if err := p.event(line); err != nil {
			p.problem("%v", err)
		}
	}
}

func (p *Parser) problem(format string, args ...any) {
	p.res.Malformed++
	if len(p.res.Problems) < p.lim.MaxProblems {
		msg := fmt.Sprintf(format, args...)
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		p.res.Problems = append(p.res.Problems, fmt.Sprintf("line %d: %s", p.lineNo, msg))
	}
}

// clampInt converts a JSON number to an int64 in [0, math.MaxInt64]: counts and durations
// from a guest are never negative, and a float too large for int64 must not wrap.
func clampInt(f float64) int64 {
	switch {
	case f <= 0 || math.IsNaN(f):
		return 0
	case f >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(f)
}

// clampFloat keeps a cost in [0, +max float].
func clampFloat(f float64) float64 {
	if f <= 0 || math.IsNaN(f) {
		return 0
	}
	return f
}
