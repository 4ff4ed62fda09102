package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/voidbox/voidbox/internal/textfmt"
	"github.com/voidbox/voidbox/runtime"
)

// MaxToolInput bounds the tool input kept on an execute_tool span: a tool's input can
// be a whole file the agent writes, and a span is not the place for it.
const MaxToolInput = 1024

// RunTrace turns one run's executor events into spans. Its methods do nothing on a
// RunTrace of a disabled Telemetry, so the executor can always call them.
type RunTrace struct {
	tracer  trace.Tracer
	enabled bool
	ctx     context.Context // carries the run span
	run     trace.Span
	meters  *meters // nil when metrics are off

	mu     sync.Mutex // the executor serializes OnEvent; End may come from elsewhere
	stages map[string]*stageSpans
	info   map[string]*runtime.Stage
	ended  bool
}

// stageSpans are a stage's open spans: the current attempt's, and its agent's once
// the agent reported something.
type stageSpans struct {
	ctx     context.Context
	span    trace.Span
	started time.Time
	agent   trace.Span
	agentTx context.Context
}

// Run starts the `run` span; name says what ran (the program's path). The returned ctx
// carries it, so Traceparent(ctx) is the run's.
func (t *Telemetry) Run(ctx context.Context, name string) (context.Context, *RunTrace) {
	if !t.recording() {
		return ctx, &RunTrace{ctx: ctx}
	}
	ctx, span := t.tracer.Start(ctx, "run", trace.WithAttributes(attribute.String("voidbox.run.name", name)))
	return ctx, &RunTrace{
		tracer:  t.tracer,
		enabled: true,
		ctx:     ctx,
		run:     span,
		meters:  t.meters,
		stages:  map[string]*stageSpans{},
		info:    map[string]*runtime.Stage{},
	}
}

// Describe records the graph's stages so their spans carry what events do not say:
// image, memory, vcpus, network, and for agent stages the requested model.
func (r *RunTrace) Describe(root runtime.Node) {
	if r == nil || !r.enabled || root == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range root.Stages() {
		r.info[s.Name] = s
	}
}

// Traceparent is the W3C traceparent of stage's open attempt span, or of the run span
// when the stage has none; "" when telemetry is off.
func (r *RunTrace) Traceparent(stage string) string {
	if r == nil || !r.enabled {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.stages[stage]; st != nil {
		return Traceparent(st.ctx)
	}
	return Traceparent(r.ctx)
}

// StageContext is the context of stage's open attempt span (the run's when it has
// none, or telemetry is off): what a stage's log records are logged with.
func (r *RunTrace) StageContext(stage string) context.Context {
	if r == nil {
		return context.Background()
	}
	if r.enabled {
		r.mu.Lock()
		defer r.mu.Unlock()
		if st := r.stages[stage]; st != nil {
			return st.ctx
		}
	}
	return r.ctx
}

// OnEvent is a runtime.Executor's OnEvent, or is called from it.
func (r *RunTrace) OnEvent(ev runtime.Event) {
	if r == nil || !r.enabled {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.meters.event(r.ctx, ev, r.info[ev.Stage])
	switch ev.Kind {
	case runtime.EventStart:
		r.start(ev)
	case runtime.EventRetry:
		r.retry(ev)
	case runtime.EventTool:
		r.tool(ev)
	case runtime.EventPhase:
		r.phase(ev)
	case runtime.EventEgress:
		r.egress(ev)
	case runtime.EventEnd:
		r.end(ev)
	case runtime.EventSkip:
		attrs := []attribute.KeyValue{attribute.String("voidbox.stage.name", ev.Stage)}
		if ev.Result != nil && ev.Result.Error != "" {
			attrs = append(attrs, attribute.String("voidbox.stage.error", ev.Result.Error))
		}
		r.run.AddEvent("skip", trace.WithAttributes(attrs...))
	}
}

func (r *RunTrace) start(ev runtime.Event) {
	if old := r.stages[ev.Stage]; old != nil {
		old.close() // an attempt that never reported its end; do not leak it
	}
	attrs := []attribute.KeyValue{
		attribute.String("voidbox.stage.name", ev.Stage),
		attribute.Int("voidbox.stage.attempt", ev.Attempt),
	}
	if s := r.info[ev.Stage]; s != nil {
		attrs = append(attrs, describeStage(s)...)
	}
	now := time.Now()
	ctx, span := r.tracer.Start(r.ctx, "stage "+ev.Stage, trace.WithTimestamp(now), trace.WithAttributes(attrs...))
	r.stages[ev.Stage] = &stageSpans{ctx: ctx, span: span, started: now}
}

func describeStage(s *runtime.Stage) []attribute.KeyValue {
	kind := "command"
	if s.Prompt != "" {
		kind = "agent"
	}
	attrs := []attribute.KeyValue{attribute.String("voidbox.stage.kind", kind)}
	if s.Image != "" {
		attrs = append(attrs, attribute.String("voidbox.stage.image", s.Image))
	}
	if s.MemoryMB > 0 {
		attrs = append(attrs, attribute.Int("voidbox.stage.memory_mb", s.MemoryMB))
	}
	if s.VCPUs > 0 {
		attrs = append(attrs, attribute.Int("voidbox.stage.vcpus", s.VCPUs))
	}
	if s.Network {
		attrs = append(attrs, attribute.Bool("voidbox.stage.network", true))
	}
	return attrs
}

// retry closes the attempt that failed; the retry event says why and what comes next.
func (r *RunTrace) retry(ev runtime.Event) {
	st := r.stages[ev.Stage]
	if st == nil {
		return
	}
	msg := ""
	if ev.Err != nil {
		msg = ev.Err.Error()
	}
	st.span.AddEvent("retry", trace.WithAttributes(
		attribute.Int("voidbox.stage.next_attempt", ev.Attempt),
		attribute.String("error.message", msg),
	))
	st.span.SetStatus(codes.Error, msg)
	st.close()
	delete(r.stages, ev.Stage)
}

// tool records one tool call as a child of the stage's invoke_agent span. The event
// marks the call; its result is not reported, so the span has no duration.
func (r *RunTrace) tool(ev runtime.Event) {
	st := r.stages[ev.Stage]
	if st == nil || ev.Tool == nil {
		return
	}
	ctx := r.agentSpan(ev.Stage, st)
	_, span := r.tracer.Start(ctx, "execute_tool "+ev.Tool.Name, trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"),
		attribute.String("gen_ai.tool.name", ev.Tool.Name),
		attribute.String("gen_ai.tool.call.arguments", textfmt.Clip(ev.Tool.Input, MaxToolInput, "…")),
	))
	span.End()
}

// egress records one decision of the stage's network as an event on its attempt span.
func (r *RunTrace) egress(ev runtime.Event) {
	st, d := r.stages[ev.Stage], ev.Egress
	if st == nil || d == nil {
		return
	}
	decision := "deny"
	if d.Allowed {
		decision = "allow"
	}
	attrs := []attribute.KeyValue{
		attribute.String("voidbox.network.decision", decision),
		attribute.String("voidbox.network.protocol", d.Proto),
		attribute.String("voidbox.network.reason", d.Reason),
	}
	if d.Dst != "" {
		attrs = append(attrs, attribute.String("destination.address", d.Dst))
	}
	if d.Port != 0 {
		attrs = append(attrs, attribute.Int("destination.port", d.Port))
	}
	if d.Name != "" {
		attrs = append(attrs, attribute.String("dns.question.name", d.Name))
	}
	if d.Entry != "" {
		attrs = append(attrs, attribute.String("voidbox.network.entry", d.Entry))
	}
	if d.UnloggedBefore > 0 {
		attrs = append(attrs, attribute.Int64("voidbox.network.unlogged_before", int64(d.UnloggedBefore)))
	}
	st.span.AddEvent("egress", trace.WithAttributes(attrs...))
}

// phase records one step of the attempt (vm.boot, agent.connect, exec, ...) as a child
// span of the attempt's, dated as the phase was.
func (r *RunTrace) phase(ev runtime.Event) {
	st := r.stages[ev.Stage]
	p := ev.Phase
	if st == nil || p == nil {
		return
	}
	name := p.Name
	attrs := []attribute.KeyValue{attribute.String("voidbox.phase.name", p.Name)}
	if p.Detail != "" {
		attrs = append(attrs, attribute.String("voidbox.phase.detail", p.Detail))
		if p.Name == runtime.PhaseExec {
			name += " " + p.Detail
		}
	}
	_, span := r.tracer.Start(st.ctx, name, trace.WithTimestamp(p.Start), trace.WithAttributes(attrs...))
	if p.Error != "" {
		span.SetStatus(codes.Error, p.Error)
	}
	span.End(trace.WithTimestamp(p.Start.Add(p.Duration)))
}

// agentSpan opens the stage's invoke_agent span on first need, dated from the
// attempt's start: the agent runs for the whole attempt.
func (r *RunTrace) agentSpan(stage string, st *stageSpans) context.Context {
	if st.agent == nil {
		attrs := []attribute.KeyValue{
			attribute.String("gen_ai.operation.name", "invoke_agent"),
			attribute.String("gen_ai.agent.name", stage),
		}
		system, model := agentSystem(r.info[stage])
		if model != "" {
			attrs = append(attrs, attribute.String("gen_ai.request.model", model))
		}
		// gen_ai.system is the name most backends read; semconv 1.37 renamed it
		// gen_ai.provider.name, so both are set.
		attrs = append(attrs, attribute.String("gen_ai.system", system), attribute.String("gen_ai.provider.name", system))
		st.agentTx, st.agent = r.tracer.Start(st.ctx, "invoke_agent "+stage,
			trace.WithTimestamp(st.started), trace.WithAttributes(attrs...))
	}
	return st.agentTx
}

// agentSystem is the gen_ai system (provider) and requested model of an agent stage;
// claude, the default provider, is Anthropic's.
func agentSystem(s *runtime.Stage) (system, model string) {
	system = "anthropic"
	if s != nil && s.LLM != nil {
		if s.LLM.Provider != "" && s.LLM.Provider != "claude" {
			system = s.LLM.Provider
		}
		model = s.LLM.Model
	}
	return system, model
}

func (r *RunTrace) end(ev runtime.Event) {
	st := r.stages[ev.Stage]
	delete(r.stages, ev.Stage)
	sr := ev.Result
	if st == nil {
		// Cancelled between attempts (during a retry's back-off): no attempt is open.
		attrs := []attribute.KeyValue{attribute.String("voidbox.stage.name", ev.Stage)}
		if sr != nil {
			attrs = append(attrs, attribute.String("voidbox.stage.status", string(sr.Status)),
				attribute.String("voidbox.stage.error", sr.Error))
		}
		r.run.AddEvent("stage.end", trace.WithAttributes(attrs...))
		return
	}
	defer st.close()
	if sr == nil {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("voidbox.stage.status", string(sr.Status)),
		attribute.Int("voidbox.stage.attempts", sr.Attempts),
		attribute.Int64("voidbox.stage.duration_ms", sr.DurationMS),
	}
	if sr.ExitCode != nil {
		attrs = append(attrs, attribute.Int("voidbox.stage.exit_code", *sr.ExitCode))
	}
	if sr.Signal != "" {
		attrs = append(attrs, attribute.String("voidbox.stage.signal", sr.Signal))
	}
	if sr.Error != "" {
		attrs = append(attrs, attribute.String("voidbox.stage.error", sr.Error))
	}
	if n := sr.Network; n != nil {
		attrs = append(attrs,
			attribute.Int64("voidbox.network.tcp.allowed", int64(n.TCP.Allowed)),
			attribute.Int64("voidbox.network.tcp.denied", int64(n.TCP.Denied)),
			attribute.Int64("voidbox.network.udp.allowed", int64(n.UDP.Allowed)),
			attribute.Int64("voidbox.network.udp.denied", int64(n.UDP.Denied)),
			attribute.Int64("voidbox.network.dns.allowed", int64(n.DNS.Allowed)),
			attribute.Int64("voidbox.network.dns.denied", int64(n.DNS.Denied)),
			attribute.Int64("voidbox.network.inbound", int64(n.Inbound)),
		)
	}
	st.span.SetAttributes(attrs...)
	if sr.Status == runtime.StatusFailed {
		st.span.SetStatus(codes.Error, sr.Error)
	}
	if a := sr.Agent; a != nil {
		r.agentSpan(ev.Stage, st)
		st.agent.SetAttributes(agentAttributes(a)...)
		if a.IsError {
			st.agent.SetStatus(codes.Error, textfmt.Clip(a.Result, MaxToolInput, "…"))
		}
	}
}

// agentAttributes are an agent report's gen_ai usage attributes and voidbox's extras.
func agentAttributes(a *runtime.AgentReport) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.Int64("gen_ai.usage.input_tokens", a.InputTokens),
		attribute.Int64("gen_ai.usage.output_tokens", a.OutputTokens),
		attribute.Float64("voidbox.agent.cost_usd", a.CostUSD),
		attribute.Int("voidbox.agent.turns", a.Turns),
		attribute.Int64("voidbox.agent.duration_api_ms", a.DurationAPIMS),
		attribute.Int("voidbox.agent.tool_calls", len(a.ToolCalls)),
	}
	if a.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.response.model", a.Model))
	}
	if a.SessionID != "" {
		attrs = append(attrs, attribute.String("gen_ai.conversation.id", a.SessionID))
	}
	return attrs
}

func (st *stageSpans) close() {
	if st.agent != nil {
		st.agent.End()
	}
	st.span.End()
}

// End closes the run span with the run's outcome; spans of stages still open (a run
// that ended without their end event) are closed first so none is lost.
func (r *RunTrace) End(result *runtime.Result) {
	if r == nil || !r.enabled {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return
	}
	r.ended = true
	r.meters.run(r.ctx, result)
	for name, st := range r.stages {
		st.close()
		delete(r.stages, name)
	}
	if result != nil {
		r.run.SetAttributes(
			attribute.Bool("voidbox.run.ok", result.OK),
			attribute.Int64("voidbox.run.duration_ms", result.DurationMS),
			attribute.Int("voidbox.run.stages", len(result.Order)),
		)
		if !result.OK {
			r.run.SetStatus(codes.Error, result.Error)
		}
	}
	r.run.End()
}
