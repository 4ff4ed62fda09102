// Package telemetry turns a voidbox run into OpenTelemetry traces: a `run` span, a
// `stage NAME` span per attempt, an `invoke_agent` span per agent run with the gen_ai
// semantic conventions, and an `execute_tool` span per tool call; and into metrics
// (stage and run durations, attempts, retries, tokens, cost, tool calls, egress
// decisions, see metrics.go). Spans and metrics go to an OTLP collector when an
// endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or VOIDBOX_OTLP_ENDPOINT); spans
// also go to a file as OTLP JSON when --trace-file asks for it. With neither, no
// exporter or SDK provider exists and every call returns at once: a run no
// one is watching pays nothing for being instrumented.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every span this package makes.
const ScopeName = "github.com/voidbox/voidbox/telemetry"

// Config says where a run's spans go.
type Config struct {
	// TraceFile, when set, receives the spans as OTLP JSON, one ExportTraceServiceRequest
	// per line (the collector's file exporter format).
	TraceFile string
	// ServiceName is the resource's service.name; "voidbox" when empty.
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override it, as the spec says.
	ServiceName string
	// Env reads the environment; os.Getenv when nil. The OTLP exporters also read the
	// process environment themselves for the OTEL_EXPORTER_OTLP_* settings this package
	// does not pass explicitly (headers, timeout, compression, certificates).
	Env func(string) string
}

// Telemetry owns the tracer provider of one voidbox process.
type Telemetry struct {
	sdk    *sdktrace.TracerProvider // nil when nothing exports
	tracer trace.Tracer
	meters *meters                // nil when no OTLP endpoint is set
	logs   *sdklog.LoggerProvider // nil when no OTLP endpoint is set (log.go)
}

// Setup builds the tracer provider Config asks for. Shutdown must be called to flush
// the spans still batched when the run ends.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	env := cfg.Env
	if env == nil {
		env = os.Getenv
	}
	var exporters []sdktrace.SpanExporter
	if exp, err := otlpExporter(ctx, env); err != nil {
		return nil, err
	} else if exp != nil {
		exporters = append(exporters, exp)
	}
	if cfg.TraceFile != "" {
		exp, err := newFileExporter(cfg.TraceFile)
		if err != nil {
			return nil, closeAll(ctx, exporters, err)
		}
		exporters = append(exporters, exp)
	}
	metricExp, err := otlpMetricExporter(ctx, env)
	if err != nil {
		return nil, closeAll(ctx, exporters, err)
	}
	logExp, err := otlpLogExporter(ctx, env)
	if err != nil {
		if metricExp != nil {
			err = errors.Join(err, metricExp.Shutdown(ctx))
		}
		return nil, closeAll(ctx, exporters, err)
	}
	if len(exporters) == 0 && metricExp == nil && logExp == nil {
		return &Telemetry{tracer: noop.NewTracerProvider().Tracer(ScopeName)}, nil
	}
	service := cfg.ServiceName
	if service == "" {
		service = "voidbox"
	}
	// WithFromEnv comes last so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		err = fmt.Errorf("telemetry: resource: %w", err)
		if metricExp != nil {
			err = errors.Join(err, metricExp.Shutdown(ctx))
		}
		if logExp != nil {
			err = errors.Join(err, logExp.Shutdown(ctx))
		}
		return nil, closeAll(ctx, exporters, err)
	}
	t := &Telemetry{tracer: noop.NewTracerProvider().Tracer(ScopeName)}
	if logExp != nil {
		t.logs = newLoggerProvider(logExp, res)
	}
	if metricExp != nil {
		t.meters = newMeters(metricExp, res)
	}
	if len(exporters) > 0 {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		for _, exp := range exporters {
			opts = append(opts, sdktrace.WithBatcher(exp))
		}
		t.sdk = sdktrace.NewTracerProvider(opts...)
		t.tracer = t.sdk.Tracer(ScopeName)
	}
	return t, nil
}

func closeAll(ctx context.Context, exporters []sdktrace.SpanExporter, err error) error {
	for _, exp := range exporters {
		err = errors.Join(err, exp.Shutdown(ctx))
	}
	return err
}

// Enabled reports whether spans are recorded and exported anywhere.
func (t *Telemetry) Enabled() bool { return t != nil && t.sdk != nil }

// recording reports whether a run records anything: spans, metrics or both (an
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT alone gives metrics without spans).
func (t *Telemetry) recording() bool { return t.Enabled() || (t != nil && t.meters != nil) }

// Shutdown flushes the batched spans and the run's metrics to every exporter and
// closes them.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.sdk != nil {
		if err := t.sdk.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: flushing spans: %w", err))
		}
	}
	if err := t.meters.shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if t.logs != nil {
		if err := t.logs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: flushing logs: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Traceparent is the W3C traceparent header of ctx's current span, "" when there is
// no recorded span (telemetry off). A guest's TRACEPARENT makes its tools' spans join
// the run's trace.
func Traceparent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// otlpExporter returns the OTLP span exporter the environment configures, or nil when
// no endpoint is set. The endpoint is passed explicitly so VOIDBOX_OTLP_ENDPOINT and a
// Config.Env other than the process's work like the standard variables.
func otlpExporter(ctx context.Context, env func(string) string) (sdktrace.SpanExporter, error) {
	endpoint, signalSpecific := endpointFrom(env, "TRACES")
	if endpoint == "" {
		return nil, nil
	}
	protocol, protocolVar := firstSet(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch protocol {
	case "grpc":
		var opt otlptracegrpc.Option
		if strings.Contains(endpoint, "://") {
			opt = otlptracegrpc.WithEndpointURL(endpoint)
		} else {
			opt = otlptracegrpc.WithEndpoint(endpoint)
		}
		exp, err := otlptracegrpc.New(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP gRPC exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	case "", "http/protobuf", "http/json":
		opts := []otlptracehttp.Option{httpEndpoint(endpoint, signalSpecific)}
		if protocol == "http/json" {
			opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP HTTP exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("telemetry: %s=%q: want grpc, http/protobuf or http/json", protocolVar, protocol)
	}
}

// endpointFrom picks signal's endpoint (signal is TRACES or METRICS); signalSpecific
// says it is a full URL (OTEL_EXPORTER_OTLP_<signal>_ENDPOINT) rather than a base the
// signal path joins.
func endpointFrom(env func(string) string, signal string) (endpoint string, signalSpecific bool) {
	if v := strings.TrimSpace(env("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT")); v != "" {
		return v, true
	}
	v, _ := firstSet(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "VOIDBOX_OTLP_ENDPOINT")
	return v, false
}

// httpURL is the OTLP/HTTP URL for endpoint: the spec appends path (v1/traces,
// v1/metrics) to a base endpoint's, and uses a signal-specific one as it is. isURL is
// false for a bare host:port, which the exporter's WithEndpoint completes itself.
func httpURL(endpoint string, signalSpecific bool, path string) (url string, isURL bool) {
	if !strings.Contains(endpoint, "://") {
		return endpoint, false
	}
	if !signalSpecific {
		endpoint = strings.TrimRight(endpoint, "/") + "/" + path
	}
	return endpoint, true
}

// httpEndpoint is the OTLP/HTTP trace exporter option for endpoint.
func httpEndpoint(endpoint string, signalSpecific bool) otlptracehttp.Option {
	if url, isURL := httpURL(endpoint, signalSpecific, "v1/traces"); isURL {
		return otlptracehttp.WithEndpointURL(url)
	}
	return otlptracehttp.WithEndpoint(endpoint) // host:port; the exporter adds /v1/traces
}

func firstSet(env func(string) string, names ...string) (value, name string) {
	for _, n := range names {
		if v := strings.TrimSpace(env(n)); v != "" {
			return v, n
		}
	}
	return "", names[0]
}
