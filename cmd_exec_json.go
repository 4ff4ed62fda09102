package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"unicode/utf8"

	"github.com/voidbox/voidbox/runtime"
)

// jsonResult is the document `voidbox exec --json` prints: the last run's result, the
// fields of run()'s value plus `order`.
//
// Output is bytes, and JSON strings hold only Unicode text. So each of output, stdout and
// stderr (of the run and of every stage) is a string field when its value is valid UTF-8,
// and otherwise that field is absent and NAME_base64 holds the exact bytes in standard
// base64 ("stdout_base64": "//5hYg=="). Exactly one of the two is present.
type jsonResult struct {
	OK bool `json:"ok"`
	jsonText
	Stages     map[string]*jsonStage `json:"stages"`
	Order      []string              `json:"order"`
	DurationMS int64                 `json:"duration_ms"`
	Error      string                `json:"error,omitempty"`
}

// jsonStage is one stage. exit_code is null unless the process exited, and signal is
// null unless a signal killed it (runtime.StageResult says why).
type jsonStage struct {
	Name     string              `json:"name"`
	Status   runtime.StageStatus `json:"status"`
	ExitCode *int                `json:"exit_code"`
	Signal   *string             `json:"signal"`
	jsonStreams
	jsonText
	DurationMS int64  `json:"duration_ms"`
	Attempts   int    `json:"attempts"`
	Error      string `json:"error,omitempty"`
	// Network is the egress decisions of a box with network = True.
	Network *runtime.NetworkCounts `json:"network,omitempty"`
	// Agent is an agent stage's report (null for command stages).
	Agent *runtime.AgentReport `json:"agent"`
	// Guest is the guest's CPU, memory, network and process samples (null where
	// nothing was measured: local and mock sandboxes, a VM whose command never ran).
	Guest *runtime.GuestStats `json:"guest"`
	// Phases are the timed steps of each attempt: vm.prepare, vm.boot,
	// agent.connect, file.write, exec, file.read, sandbox.close.
	Phases []runtime.Phase `json:"phases,omitempty"`
	// Steps are a workflow stage's steps: name, status, exit code, duration, error.
	Steps         []runtime.StepResult `json:"steps,omitempty"`
	DroppedPhases int                  `json:"dropped_phases,omitempty"`
}

// jsonText is an `output` field under the UTF-8-or-base64 rule.
type jsonText struct {
	Output       *string `json:"output,omitempty"`
	OutputBase64 *string `json:"output_base64,omitempty"`
}

// jsonStreams are a stage's `stdout` and `stderr` under the same rule.
type jsonStreams struct {
	Stdout       *string `json:"stdout,omitempty"`
	StdoutBase64 *string `json:"stdout_base64,omitempty"`
	Stderr       *string `json:"stderr,omitempty"`
	StderrBase64 *string `json:"stderr_base64,omitempty"`
}

// textOrBase64 returns s as the string field when it is valid UTF-8, else its base64 as
// the _base64 field; the other is nil (omitted).
func textOrBase64(s string) (text, b64 *string) {
	if utf8.ValidString(s) {
		return &s, nil
	}
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	return nil, &enc
}

func newJSONResult(r *runtime.Result) *jsonResult {
	doc := &jsonResult{
		OK:         r.OK,
		Stages:     make(map[string]*jsonStage, len(r.Stages)),
		Order:      append([]string{}, r.Order...),
		DurationMS: r.DurationMS,
		Error:      r.Error,
	}
	doc.Output, doc.OutputBase64 = textOrBase64(r.Output)
	for name, s := range r.Stages {
		js := &jsonStage{Name: s.Name, Status: s.Status, ExitCode: s.ExitCode, DurationMS: s.DurationMS, Attempts: s.Attempts, Error: s.Error, Network: s.Network, Agent: s.Agent, Phases: s.Phases, DroppedPhases: s.DroppedPhases, Steps: s.Steps}
		js.Guest = s.Guest
		if s.Signal != "" {
			js.Signal = &s.Signal
		}
		js.Stdout, js.StdoutBase64 = textOrBase64(s.Stdout)
		js.Stderr, js.StderrBase64 = textOrBase64(s.Stderr)
		js.Output, js.OutputBase64 = textOrBase64(s.Output)
		doc.Stages[name] = js
	}
	return doc
}

// execJSON is the document for a finished `voidbox exec --json`: the last run's result.
// When the exec was cancelled (cancelled is the reason), the error says why ("cancelled:
// --timeout 5s expired"), and if the cancellation did not stop a run (it came before the
// first run() or between two), the document is one with no stages: a cancelled exec
// never prints the ok result of an earlier run.
func execJSON(last *runtime.Result, cancelled string) *jsonResult {
	if cancelled != "" && (last == nil || last.Error != runtime.Cancelled) {
		last = &runtime.Result{Error: runtime.Cancelled}
	}
	if last == nil { // every exec that gets here ran a graph; keep the document whole anyway
		last = &runtime.Result{}
	}
	doc := newJSONResult(last)
	if cancelled != "" {
		doc.Error = runtime.Cancelled + ": " + cancelled
	}
	return doc
}

// writeJSON prints doc indented, with <, > and & as themselves (the document is not for
// an HTML page).
func writeJSON(w io.Writer, doc *jsonResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
