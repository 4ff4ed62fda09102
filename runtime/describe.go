package runtime

import (
	"fmt"
	"strings"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// Edge is a data dependency: To reads From's output.
type Edge struct{ From, To string }

// Edges lists the graph's data edges in declaration order.
func Edges(root Node) []Edge {
	var out []Edge
	var walk func(n Node)
	walk = func(n Node) {
		switch n := n.(type) {
		case *Pipe:
			for i, child := range n.Nodes {
				walk(child)
				if i > 0 {
					for _, from := range sinks(n.Nodes[i-1]) {
						for _, to := range sources(child) {
							out = append(out, Edge{from.Name, to.Name})
						}
					}
				}
			}
		case *FanOut:
			for _, child := range n.Nodes {
				walk(child)
			}
		}
	}
	walk(root)
	return out
}

// sources are the stages that read a node's input.
func sources(n Node) []*Stage {
	switch n := n.(type) {
	case *Pipe:
		return sources(n.Nodes[0])
	case *FanOut:
		var out []*Stage
		for _, c := range n.Nodes {
			out = append(out, sources(c)...)
		}
		return out
	}
	return []*Stage{n.(*Stage)}
}

// sinks are the stages whose output makes a node's output.
func sinks(n Node) []*Stage {
	switch n := n.(type) {
	case *Pipe:
		return sinks(n.Nodes[len(n.Nodes)-1])
	case *FanOut:
		var out []*Stage
		for _, c := range n.Nodes {
			out = append(out, sinks(c)...)
		}
		return out
	}
	return []*Stage{n.(*Stage)}
}

// Describe renders the graph as an indented tree with each stage's sandbox settings,
// followed by its edges: what `voidbox check` prints.
func Describe(root Node) string {
	var b strings.Builder
	describe(&b, root, "", "")
	edges := Edges(root)
	if len(edges) > 0 {
		b.WriteString("edges:\n")
		for _, e := range edges {
			fmt.Fprintf(&b, "  %s -> %s\n", e.From, e.To)
		}
	}
	return b.String()
}

func describe(b *strings.Builder, n Node, first, rest string) {
	var children []Node
	switch n := n.(type) {
	case *Pipe:
		fmt.Fprintf(b, "%spipe\n", first)
		children = n.Nodes
	case *FanOut:
		fmt.Fprintf(b, "%sfan_out\n", first)
		children = n.Nodes
	case *Stage:
		fmt.Fprintf(b, "%s%s  %s\n", first, n.Name, n.settings())
		return
	}
	for i, c := range children {
		if i == len(children)-1 {
			describe(b, c, rest+"└─ ", rest+"   ")
		} else {
			describe(b, c, rest+"├─ ", rest+"│  ")
		}
	}
}

// settings summarises what a stage runs and the sandbox it gets.
func (s *Stage) settings() string {
	var parts []string
	switch {
	case len(s.Steps) > 0:
		parts = append(parts, fmt.Sprintf("steps=%d output_step=%s", len(s.Steps), s.Steps[outputStepIndex(s)].Name))
	case len(s.Cmd) > 0:
		parts = append(parts, fmt.Sprintf("cmd=%q", s.Cmd))
	default:
		parts = append(parts, fmt.Sprintf("prompt=%q", textfmt.Clip(s.Prompt, 40, "...")))
	}
	parts = append(parts, fmt.Sprintf("memory=%dMiB vcpus=%d", s.MemoryMB, s.VCPUs))
	if s.Image != "" {
		parts = append(parts, "image="+s.Image)
	}
	if s.Network {
		parts = append(parts, fmt.Sprintf("network=on egress=%v", s.Egress))
		for _, p := range s.Ports {
			parts = append(parts, "port="+p.String())
		}
	} else {
		parts = append(parts, "network=off")
	}
	for _, m := range s.Mounts {
		parts = append(parts, fmt.Sprintf("mount=%s:%s:%s", m.Host, m.Guest, m.Mode))
	}
	for _, sk := range s.Skills {
		parts = append(parts, fmt.Sprintf("skill=%s:%s", sk.Kind, sk.Name))
	}
	if s.LLM != nil {
		parts = append(parts, fmt.Sprintf("llm=%s:%s", s.LLM.Provider, s.LLM.Model))
	}
	if len(s.Allow) > 0 {
		parts = append(parts, fmt.Sprintf("allow=%v", s.Allow))
	}
	parts = append(parts, fmt.Sprintf("timeout=%s retries=%d on_failure=%s", s.Timeout, s.Retries, s.OnFailure))
	return strings.Join(parts, " ")
}
