package runtime

import (
	"strings"
	"testing"
	"time"
)

func stage(name string) *Stage {
	return &Stage{Name: name, Cmd: []string{"true"}, MemoryMB: 512, VCPUs: 1, Timeout: 10 * time.Minute, OnFailure: FailStop}
}

func TestEdgesPipeIntoFanOutIntoStage(t *testing.T) {
	a, b, c, d := stage("a"), stage("b"), stage("c"), stage("d")
	g := &Pipe{Nodes: []Node{a, &FanOut{Nodes: []Node{b, &Pipe{Nodes: []Node{c}}}}, d}}
	var got []string
	for _, e := range Edges(g) {
		got = append(got, e.From+">"+e.To)
	}
	want := "a>b a>c b>d c>d"
	if strings.Join(got, " ") != want {
		t.Fatalf("edges = %q, want %q", strings.Join(got, " "), want)
	}
}

func TestDescribeTree(t *testing.T) {
	a, b, c := stage("a"), stage("b"), stage("c")
	b.Network, b.Egress = true, []string{"example.test:80"}
	got := Describe(&Pipe{Nodes: []Node{a, &FanOut{Nodes: []Node{b, c}}}})
	want := `pipe
├─ a  cmd=["true"] memory=512MiB vcpus=1 network=off timeout=10m0s retries=0 on_failure=stop
└─ fan_out
   ├─ b  cmd=["true"] memory=512MiB vcpus=1 network=on egress=[example.test:80] timeout=10m0s retries=0 on_failure=stop
   └─ c  cmd=["true"] memory=512MiB vcpus=1 network=off timeout=10m0s retries=0 on_failure=stop
edges:
  a -> b
  a -> c
`
	if got != want {
		t.Fatalf("Describe =\n%s\nwant\n%s", got, want)
	}
}

func TestValidateRejectsDuplicates(t *testing.T) {
	a := stage("a")
	a.Pos = "p.star:1:5"
	if err := Validate(&Pipe{Nodes: []Node{a, a}}); err == nil || !strings.Contains(err.Error(), `box "a" (declared at p.star:1:5) appears more than once`) {
		t.Fatalf("reused box: err = %v", err)
	}
	b := stage("a")
	b.Pos = "p.star:2:5"
	if err := Validate(&FanOut{Nodes: []Node{a, b}}); err == nil || !strings.Contains(err.Error(), `stage name "a" is used by two boxes (declared at p.star:1:5 and p.star:2:5)`) {
		t.Fatalf("duplicate name: err = %v", err)
	}
}
