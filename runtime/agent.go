package runtime

import "context"

// AgentReport is an agent stage's run as its agent (claude-code) reported it: the
// stage's `agent` field in run() results and --json. Command stages have none.
type AgentReport struct {
	Result        string     `json:"result"`
	IsError       bool       `json:"is_error"`
	CostUSD       float64    `json:"cost_usd"`
	InputTokens   int64      `json:"input_tokens"`
	OutputTokens  int64      `json:"output_tokens"`
	Turns         int        `json:"turns"`
	DurationAPIMS int64      `json:"duration_api_ms"`
	Model         string     `json:"model"`
	SessionID     string     `json:"session_id"`
	ToolCalls     []ToolCall `json:"tool_calls"`
}

// ToolCall is one tool the agent used; Input is the tool's input as JSON text.
type ToolCall struct {
	Name  string `json:"name"`
	Input string `json:"input"`
}

type toolReporterKey struct{}

// ReportToolCall tells the live view that an agent stage's agent called a tool. An
// AgentRunner calls it with the ctx RunAgent got; elsewhere it does nothing.
func ReportToolCall(ctx context.Context, call ToolCall) {
	if f, ok := ctx.Value(toolReporterKey{}).(func(ToolCall)); ok {
		f(call)
	}
}

func withToolReporter(ctx context.Context, f func(ToolCall)) context.Context {
	return context.WithValue(ctx, toolReporterKey{}, f)
}
