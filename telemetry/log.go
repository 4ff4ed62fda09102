package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/voidbox/voidbox/internal/termsafe"
)

// Log attribute keys. A console line carries the stage's name and SourceConsole.
const (
	LogStage  = "voidbox.stage.name"
	LogSource = "voidbox.log.source"
	// SourceConsole marks a line of a VM's serial console: the guest kernel's and
	// the guest agent's messages.
	SourceConsole = "vm.console"
)

// otlpLogExporter returns the OTLP log exporter the environment configures, or nil
// when no endpoint is set; the rules are the traces' with OTEL_EXPORTER_OTLP_LOGS_*.
func otlpLogExporter(ctx context.Context, env func(string) string) (sdklog.Exporter, error) {
	endpoint, signalSpecific := endpointFrom(env, "LOGS")
	if endpoint == "" {
		return nil, nil
	}
	protocol, protocolVar := firstSet(env, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch protocol {
	case "grpc":
		opt := otlploggrpc.WithEndpoint(endpoint)
		if strings.Contains(endpoint, "://") {
			opt = otlploggrpc.WithEndpointURL(endpoint)
		}
		exp, err := otlploggrpc.New(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP gRPC log exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	case "", "http/protobuf", "http/json":
		// As for metrics, the Go exporter speaks protobuf only; the path is the same.
		opt := otlploghttp.WithEndpoint(endpoint) // host:port; the exporter adds /v1/logs
		if url, isURL := httpURL(endpoint, signalSpecific, "v1/logs"); isURL {
			opt = otlploghttp.WithEndpointURL(url)
		}
		exp, err := otlploghttp.New(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP HTTP log exporter for %s: %w", endpoint, err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("telemetry: %s=%q: want grpc, http/protobuf or http/json", protocolVar, protocol)
	}
}

func newLoggerProvider(exp sdklog.Exporter, res *resource.Resource) *sdklog.LoggerProvider {
	return sdklog.NewLoggerProvider(
		sdklog.WithResource(res),
		sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)),
	)
}

// Logger returns voidbox's logger for a run. Its records go to the OTLP log exporter
// when an endpoint is set (with the trace and span ids of the context they are logged
// with, so a stage's console lines sit under its span), and to text when it is not
// nil (--verbose): "[vm:NAME] line" for console lines, "voidbox: message key=value
// ... trace_id=... span_id=..." for the rest. With neither it discards everything.
func (t *Telemetry) Logger(text io.Writer) *slog.Logger {
	var hs []slog.Handler
	if t != nil && t.logs != nil {
		hs = append(hs, otelslog.NewHandler(ScopeName, otelslog.WithLoggerProvider(t.logs)))
	}
	if text != nil {
		hs = append(hs, &textHandler{w: text, mu: &sync.Mutex{}})
	}
	switch len(hs) {
	case 0:
		return slog.New(slog.DiscardHandler)
	case 1:
		return slog.New(hs[0])
	}
	return slog.New(fanout(hs))
}

// Logging reports whether log records are exported (an OTLP endpoint is set).
func (t *Telemetry) Logging() bool { return t != nil && t.logs != nil }

// ConsoleLine logs one line of stage's VM console with ctx (the stage's span).
func ConsoleLine(ctx context.Context, log *slog.Logger, stage, line string) {
	log.LogAttrs(ctx, slog.LevelInfo, line, slog.String(LogStage, stage), slog.String(LogSource, SourceConsole))
}

// textHandler writes records as single lines for a person reading stderr. Guest text
// (console lines, and anything else a record carries) is cleaned of terminal control
// sequences first.
type textHandler struct {
	w     io.Writer
	mu    *sync.Mutex // shared by the handlers WithAttrs derives
	attrs []slog.Attr
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *textHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	var b strings.Builder
	stage, source := "", ""
	for _, a := range attrs {
		switch a.Key {
		case LogStage:
			stage = a.Value.String()
		case LogSource:
			source = a.Value.String()
		}
	}
	if source == SourceConsole {
		fmt.Fprintf(&b, "[vm:%s] %s\n", termsafe.Clean(stage), termsafe.Clean(r.Message))
	} else {
		b.WriteString("voidbox: ")
		b.WriteString(termsafe.Clean(r.Message))
		for _, a := range attrs {
			fmt.Fprintf(&b, " %s=%s", a.Key, termsafe.Clean(quoteIfSpaced(a.Value.Resolve().String())))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			fmt.Fprintf(&b, " trace_id=%s span_id=%s", sc.TraceID(), sc.SpanID())
		}
		b.WriteByte('\n')
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func quoteIfSpaced(s string) string {
	if strings.ContainsAny(s, " \t\"") || s == "" {
		return fmt.Sprintf("%q", s)
	}
	return s
}

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &textHandler{w: h.w, mu: h.mu, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup is not used by voidbox; groups are flattened.
func (h *textHandler) WithGroup(string) slog.Handler { return h }

// fanout passes each record to every handler that wants it.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
