package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/voidbox/voidbox/runtime"
)

// Bucket boundaries. The SDK's defaults are made for milliseconds; these are the
// semantic conventions' advice for durations in seconds (stretched to an hour, as a
// stage can run that long) and for gen_ai.client.token.usage.
var (
	durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
		30, 60, 120, 300, 600, 1800, 3600}
	tokenBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
		16777216, 67108864}
)

// meters records a run's metrics. A nil *meters records nothing, so RunTrace calls it
// unconditionally.
type meters struct {
	provider *sdkmetric.MeterProvider

	stageDuration metric.Float64Histogram
	stageAttempts metric.Int64Counter
	stageRetries  metric.Int64Counter
	runDuration   metric.Float64Histogram
	tokens        metric.Int64Counter
	tokenUsage    metric.Int64Histogram
	cost          metric.Float64Counter
	toolCalls     metric.Int64Counter
	network       metric.Int64Counter
	guest         *guestMeters // guest.go
	bootDuration  metric.Float64Histogram
	execs         metric.Int64Counter
}

// otlpMetricExporter returns the OTLP metric exporter the environment configures, or
// nil when no endpoint is set; the endpoint and protocol rules are the traces' with
// OTEL_EXPORTER_OTLP_METRICS_* in place of OTEL_EXPORTER_OTLP_TRACES_*.
func otlpMetricExporter(ctx context.Context, env func(string) string) (sdkmetric.Exporter, error) {
	endpoint, signalSpecific := endpointFrom(env, "METRICS")
	if endpoint == "" {
		return nil, nil
	}
	protocol, protocolVar := firstSet(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch protocol {
	case "grpc":
		var opt otlpmetricgrpc.Option
		if strings.Contains(endpoint, "://") {
			opt = otlpmetricgrpc.WithEndpointURL(endpoint)
		} else {
			opt = otlpmetricgrpc.WithEndpoint(endpoint)
		}
		exp, err := otlpmetricgrpc.New(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP gRPC metric exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	case "", "http/protobuf", "http/json":
		// The Go metric exporter has no JSON encoding; an OTLP/HTTP receiver takes
		// protobuf on the same path, so http/json still reaches it.
		var opt otlpmetrichttp.Option
		if url, isURL := httpURL(endpoint, signalSpecific, "v1/metrics"); isURL {
			opt = otlpmetrichttp.WithEndpointURL(url)
		} else {
			opt = otlpmetrichttp.WithEndpoint(endpoint) // host:port; the exporter adds /v1/metrics
		}
		exp, err := otlpmetrichttp.New(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP HTTP metric exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("telemetry: %s=%q: want grpc, http/protobuf or http/json", protocolVar, protocol)
	}
}

// newMeters builds the meter provider around exp and the run instruments. A periodic
// reader exports during long runs (OTEL_METRIC_EXPORT_INTERVAL, 60s by default) and
// its Shutdown exports what the last interval left.
func newMeters(exp sdkmetric.Exporter, res *resource.Resource) *meters {
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)),
	)
	m := mp.Meter(ScopeName)
	// Instrument constructors fail only on invalid names or units, which are constants
	// here; the SDK still returns a working instrument then, so the errors are dropped.
	sec := []metric.Float64HistogramOption{metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)}
	ms := &meters{provider: mp}
	ms.stageDuration, _ = m.Float64Histogram("voidbox.stage.duration",
		append(sec, metric.WithDescription("Duration of a stage, all attempts and back-offs included."))...)
	ms.stageAttempts, _ = m.Int64Counter("voidbox.stage.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Stage attempts started."))
	ms.stageRetries, _ = m.Int64Counter("voidbox.stage.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Failed stage attempts that were retried."))
	ms.runDuration, _ = m.Float64Histogram("voidbox.run.duration",
		append(sec, metric.WithDescription("Duration of a run."))...)
	ms.tokens, _ = m.Int64Counter("voidbox.agent.tokens", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens an agent stage's model consumed, by gen_ai.token.type."))
	ms.tokenUsage, _ = m.Int64Histogram("gen_ai.client.token.usage", metric.WithUnit("{token}"),
		metric.WithExplicitBucketBoundaries(tokenBuckets...),
		metric.WithDescription("Number of input and output tokens used, per agent run."))
	// Currency is not a UCUM unit; the conventions put such units in braces.
	ms.cost, _ = m.Float64Counter("voidbox.agent.cost", metric.WithUnit("{USD}"),
		metric.WithDescription("Cost in US dollars an agent stage reported."))
	ms.toolCalls, _ = m.Int64Counter("voidbox.agent.tool_calls", metric.WithUnit("{call}"),
		metric.WithDescription("Tool calls an agent made, by gen_ai.tool.name."))
	ms.network, _ = m.Int64Counter("voidbox.network.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Egress decisions of a stage's network filter, by protocol and decision."))
	ms.guest = newGuestMeters(m)
	ms.bootDuration, _ = m.Float64Histogram("voidbox.vm.boot.duration",
		append(sec, metric.WithDescription("Time from starting a stage's VMM until its guest agent first spoke (the vm.boot phase)."))...)
	ms.execs, _ = m.Int64Counter("voidbox.execs", metric.WithUnit("{exec}"),
		metric.WithDescription("Processes run in sandboxes (stage commands and agents), by stage and outcome."))
	return ms
}

// shutdown exports the metrics not yet exported and closes the exporter.
func (m *meters) shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing metrics: %w", err)
	}
	return nil
}

// event records what one executor event says; s is the stage's description, nil when
// the graph was not described.
func (m *meters) event(ctx context.Context, ev runtime.Event, s *runtime.Stage) {
	if m == nil {
		return
	}
	stage := attribute.String("voidbox.stage.name", ev.Stage)
	switch ev.Kind {
	case runtime.EventStart:
		m.stageAttempts.Add(ctx, 1, metric.WithAttributes(stage))
		m.guest.start(ev.Stage)
	case runtime.EventSample:
		m.guest.sample(ctx, stage, ev.Stage, ev.Sample)
	case runtime.EventRetry:
		m.stageRetries.Add(ctx, 1, metric.WithAttributes(stage))
	case runtime.EventTool:
		if ev.Tool != nil {
			m.toolCalls.Add(ctx, 1, metric.WithAttributes(stage, attribute.String("gen_ai.tool.name", ev.Tool.Name)))
		}
	case runtime.EventEnd:
		if ev.Result != nil {
			m.stageEnd(ctx, stage, ev.Result, s)
		}
	case runtime.EventPhase:
		if ev.Phase != nil {
			m.phase(ctx, stage, ev.Phase)
		}
	}
}

// phase records boot time and counts execs; other phases are in the trace only.
func (m *meters) phase(ctx context.Context, stage attribute.KeyValue, p *runtime.Phase) {
	outcome := attribute.String("voidbox.phase.outcome", "ok")
	if p.Error != "" {
		outcome = attribute.String("voidbox.phase.outcome", "error")
	}
	switch p.Name {
	case runtime.PhaseBoot:
		m.bootDuration.Record(ctx, p.Duration.Seconds(), metric.WithAttributes(stage, outcome))
	case runtime.PhaseExec:
		m.execs.Add(ctx, 1, metric.WithAttributes(stage, outcome))
	}
}

func (m *meters) stageEnd(ctx context.Context, stage attribute.KeyValue, sr *runtime.StageResult, s *runtime.Stage) {
	m.stageDuration.Record(ctx, float64(sr.DurationMS)/1000,
		metric.WithAttributes(stage, attribute.String("voidbox.stage.status", string(sr.Status))))
	if n := sr.Network; n != nil {
		for _, p := range []struct {
			proto string
			d     runtime.NetworkDecisions
		}{{"tcp", n.TCP}, {"udp", n.UDP}, {"dns", n.DNS}} {
			m.decisions(ctx, stage, p.proto, "allow", p.d.Allowed)
			m.decisions(ctx, stage, p.proto, "deny", p.d.Denied)
		}
	}
	a := sr.Agent
	if a == nil {
		return
	}
	system, model := agentSystem(s)
	genAI := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", "invoke_agent"),
		attribute.String("gen_ai.provider.name", system),
	}
	if model != "" {
		genAI = append(genAI, attribute.String("gen_ai.request.model", model))
	}
	if a.Model != "" {
		genAI = append(genAI, attribute.String("gen_ai.response.model", a.Model))
	}
	for _, u := range []struct {
		kind string
		n    int64
	}{{"input", a.InputTokens}, {"output", a.OutputTokens}} {
		kind := attribute.String("gen_ai.token.type", u.kind)
		m.tokens.Add(ctx, u.n, metric.WithAttributes(stage, kind))
		m.tokenUsage.Record(ctx, u.n, metric.WithAttributes(append(genAI, kind)...))
	}
	m.cost.Add(ctx, a.CostUSD, metric.WithAttributes(stage))
}

// decisions adds n decisions; zeros are left out so a stage that never used a
// protocol adds no series for it.
func (m *meters) decisions(ctx context.Context, stage attribute.KeyValue, proto, decision string, n uint64) {
	if n == 0 {
		return
	}
	m.network.Add(ctx, int64(n), metric.WithAttributes(stage,
		attribute.String("voidbox.network.protocol", proto),
		attribute.String("voidbox.network.decision", decision)))
}

// run records the run's duration and outcome.
func (m *meters) run(ctx context.Context, result *runtime.Result) {
	if m == nil || result == nil {
		return
	}
	m.runDuration.Record(ctx, float64(result.DurationMS)/1000,
		metric.WithAttributes(attribute.Bool("voidbox.run.ok", result.OK)))
}
