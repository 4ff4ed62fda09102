package starlark

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/voidbox/voidbox/runtime"
)

// recorder is a Runner that records graphs and answers with a successful result.
type recorder struct {
	mu     sync.Mutex
	graphs []runtime.Node
}

func (r *recorder) Run(_ context.Context, root runtime.Node) (*runtime.Result, error) {
	r.mu.Lock()
	r.graphs = append(r.graphs, root)
	r.mu.Unlock()
	res := &runtime.Result{OK: true, Output: recordedOutput(root), Stages: map[string]*runtime.StageResult{}}
	for _, s := range root.Stages() {
		res.Stages[s.Name] = &runtime.StageResult{Name: s.Name, Status: runtime.StatusOK, Output: "recorded\n"}
		res.Order = append(res.Order, s.Name)
	}
	return res, nil
}

// recordedOutput is what a graph's output looks like: a fan_out at the end gives a JSON
// array with one element per branch.
func recordedOutput(n runtime.Node) string {
	for {
		switch x := n.(type) {
		case *runtime.Pipe:
			n = x.Nodes[len(x.Nodes)-1]
			continue
		case *runtime.FanOut:
			outs := make([]string, len(x.Nodes))
			for i := range outs {
				outs[i] = "recorded\n"
			}
			b, _ := json.Marshal(outs)
			return string(b)
		}
		return "recorded\n"
	}
}

// inTempDir writes files (name -> content) under a fresh directory and makes it the
// working directory, so module names in messages are short relative paths.
func inTempDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}
