// Package spec loads the YAML run specs of the project voidbox grew out of (api_version
// v1; kinds agent, pipeline, workflow and sandbox) into voidbox's stage graph, so they
// run unchanged under `voidbox run --file`. It also prints a spec as the equivalent
// .star program (`voidbox convert`) and a loaded spec's graph as text (`voidbox
// inspect`). Every error names the spec's file, line and column and says what would
// be right.
package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/voidbox/voidbox/runtime"
	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a spec file, as starlark.MaxFileSize bounds a program.
const MaxFileSize = 4 << 20

// Kinds of spec.
const (
	KindAgent    = "agent"
	KindPipeline = "pipeline"
	KindWorkflow = "workflow"
	KindSandbox  = "sandbox"
)

// Sandbox modes: where the spec asks its stages to run.
const (
	ModeAuto  = "auto"  // the default provider selection (a microVM)
	ModeLocal = "local" // host processes (--sandbox local)
	ModeMock  = "mock"  // the scripted sandbox (--sandbox mock)
)

// Spec is a loaded, valid spec.
type Spec struct {
	File string
	Kind string
	Name string
	// Mode is sandbox.mode: auto, local or mock.
	Mode string
	// Kernel and Initramfs are absolute host paths ("" when not set); GuestImage is a
	// guest image reference. They override what a VM boots, as exec's flags do.
	Kernel, Initramfs, GuestImage string
	// Graph is what the spec runs.
	Graph runtime.Node
	// Program is the equivalent .star program, formatted (what convert prints).
	Program string

	at map[string]*yaml.Node // where sandbox settings were written
}

// Pos is "FILE:LINE:COL" of a top-level sandbox setting ("sandbox.kernel"), or the
// file alone when it was not written.
func (s *Spec) Pos(key string) string {
	if n := s.at[key]; n != nil {
		return fmt.Sprintf("%s:%d:%d", s.File, n.Line, n.Column)
	}
	return s.File
}

// Load reads and validates the spec at path.
func Load(path string) (*Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Line: 1, Col: 1, Msg: fmt.Sprintf("the spec is larger than %d MiB", MaxFileSize>>20)}
	}
	return Parse(path, data)
}

// Parse validates data as the spec file path (relative paths in it resolve against
// path's directory) and builds its graph.
func Parse(path string, data []byte) (*Spec, error) {
	s, prog, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	star := starName(path)
	if s.Graph, err = prog.run(path, star); err != nil {
		return nil, err
	}
	s.Program = prog.formatted(star)
	return s, nil
}

// decode reads the YAML into a Spec (without its graph) and the program that builds
// the graph.
func decode(path string, data []byte) (*Spec, *program, error) {
	r := &reader{file: path}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, &Error{File: path, Line: 1, Col: 1, Msg: "the spec is empty; it needs at least api_version, kind and name"}
		}
		return nil, nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, nil, r.errAt(&extra, "a spec file holds one YAML document; this is a second one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := checkAliases(r, root); err != nil {
		return nil, nil, err
	}
	top, err := r.object(root, "", "api_version", "kind", "name", "sandbox", "llm", "agent", "pipeline", "workflow")
	if err != nil {
		return nil, nil, err
	}
	b := &builder{r: r, dir: filepath.Dir(path)}
	s, err := b.header(top)
	if err != nil {
		return nil, nil, err
	}
	s.File = path
	stmts, err := b.body(top, s)
	if err != nil {
		return nil, nil, err
	}
	header := []string{
		fmt.Sprintf("Converted by `voidbox convert` from %s (kind %s, name %q).", filepath.Base(path), s.Kind, s.Name),
		"Relative paths are relative to this file: keep it beside the spec.",
	}
	if flags := s.execFlags(); flags != "" {
		header = append(header, "The spec's sandbox settings, as flags: voidbox exec "+flags+" FILE.star")
	}
	return s, render(header, stmts), nil
}

// execFlags are the `voidbox exec` flags that say what the spec's sandbox section says
// beyond its boxes.
func (s *Spec) execFlags() string {
	var out string
	add := func(flag, v string) {
		if v != "" {
			if out != "" {
				out += " "
			}
			out += flag + " " + v
		}
	}
	if s.Mode != ModeAuto {
		add("--sandbox", s.Mode)
	}
	add("--kernel", s.Kernel)
	add("--initramfs", s.Initramfs)
	add("--guest-image", s.GuestImage)
	return out
}

// checkAliases refuses YAML aliases and merge keys: a spec spells its values out, and
// an alias bomb cannot make the loader expand it.
func checkAliases(r *reader, n *yaml.Node) error {
	stack := []*yaml.Node{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode {
			return r.errAt(n, "YAML aliases (*%s) are not supported in specs; write the value out", n.Value)
		}
		stack = append(stack, n.Content...)
	}
	return nil
}

// yamlError turns a YAML syntax error into an Error; yaml.v3 gives the line only.
func yamlError(path string, err error) error {
	var line int
	var msg string
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		msg = err.Error()[len(fmt.Sprintf("yaml: line %d: ", line)):]
	} else {
		msg = err.Error()
	}
	if line == 0 {
		line = 1
	}
	return &Error{File: path, Line: line, Col: 1, Msg: "not valid YAML: " + msg}
}
