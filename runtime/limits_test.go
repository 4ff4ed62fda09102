package runtime_test

import (
	"context"
	"encoding/json"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/mock"
)

// nest wraps leaf in levels pipe/fan_out nodes, alternating from the inside out
// (fan_out first), or fan_outs only.
func nest(leaf runtime.Node, levels int, alternate bool) runtime.Node {
	n := leaf
	for i := range levels {
		if alternate && i%2 == 1 {
			n = pipe(n)
		} else {
			n = fanOut(n)
		}
	}
	return n
}

func TestDepthLimit(t *testing.T) {
	leaf := func() *runtime.Stage { s := cmd("leaf"); s.Pos = "deep.star:1:8"; return s }
	if err := runtime.Validate(nest(leaf(), runtime.MaxDepth, true)); err != nil {
		t.Fatalf("%d levels: %v", runtime.MaxDepth, err)
	}
	if got := runtime.Depth(nest(leaf(), runtime.MaxDepth, true)); got != runtime.MaxDepth {
		t.Errorf("Depth = %d, want %d", got, runtime.MaxDepth)
	}
	for _, levels := range []int{runtime.MaxDepth + 1, 1000, 100000} {
		g := nest(leaf(), levels, true)
		start := time.Now()
		err := runtime.Validate(g)
		want := `graph nests pipe/fan_out ` + strconv.Itoa(levels) + ` levels deep (at stage "leaf" declared at deep.star:1:8); at most 64 are allowed`
		if err == nil || err.Error() != want {
			t.Errorf("%d levels: error %v,\nwant %s", levels, err, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%d levels: Validate took %v", levels, d)
		}
	}
	// The executor refuses the graph before opening any sandbox.
	p := mock.New(nil)
	_, err := (&runtime.Executor{Provider: p}).Run(context.Background(), nest(leaf(), 1000, true))
	if err == nil || !strings.Contains(err.Error(), "1000 levels deep") || len(p.Opened()) != 0 {
		t.Errorf("Run: err %v, opened %v", err, p.Opened())
	}
}

// A pipe/fan_out used twice (so its stages would run twice) is refused as a repeated
// box, in time linear in the distinct nodes: 60 levels of sharing spell 2^60 paths.
func TestSharedSubgraphRefusedFast(t *testing.T) {
	var n runtime.Node = cmd("s")
	for range 60 {
		n = fanOut(n, n)
	}
	done := make(chan error, 1)
	go func() { done <- runtime.Validate(pipe(n)) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `box "s" (declared at ) appears more than once`) {
			t.Errorf("error %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Validate walked every path of a shared subgraph")
	}
}

func TestValidateNilNodes(t *testing.T) {
	for want, g := range map[string]runtime.Node{
		"empty graph":                     nil,
		"pipe() contains a nil node":      pipe(cmd("a"), nil),
		"fan_out() contains a nil node":   fanOut(nil),
		"graph contains a nil stage":      pipe((*runtime.Stage)(nil)),
		"graph contains a nil fan_out":    pipe((*runtime.FanOut)(nil)),
		"graph contains a nil pipe":       (*runtime.Pipe)(nil),
		"graph contains an unknown node":  pipe(cmd("a"), fakeNode{}),
		"used by two boxes (declared at ": fanOut(cmd("a"), pipe(cmd("a"))),
	} {
		err := runtime.Validate(g)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want an error containing %q", err, want)
		}
	}
}

type fakeNode struct{ runtime.Node }

// Nested fan_outs re-escape their input at each level (a backslash doubles), so 22
// levels over an 8-byte output would build a 32 MiB array; the cap stops the run at the
// first level past it, before that level's array is encoded.
func TestNestedFanOutOutputCap(t *testing.T) {
	const limit = 1 << 20
	p := mock.New(mock.Script{"leaf": {{Stdout: strings.Repeat(`\`, 8)}}})
	e := &runtime.Executor{Provider: p}
	runtime.SetOutputLimit(e, limit)
	g := pipe(nest(cmd("leaf"), 22, false), cmd("after"))

	goruntime.GC()
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	res := run(t, e, g)
	goruntime.ReadMemStats(&after)

	want := "fan_out(fan_out(leaf, …)) output exceeds 1 MiB (the JSON array of its branches' outputs; stage outputs and graph outputs are each capped)"
	if res.OK || res.Error != want {
		t.Errorf("OK=%v Error=%q,\nwant %q", res.OK, res.Error, want)
	}
	if res.Output != "" {
		t.Errorf("Output has %d bytes, want none from a failed run", len(res.Output))
	}
	status(t, res, map[string]runtime.StageStatus{"leaf": runtime.StatusOK, "after": runtime.StatusSkipped})
	// Every level below the cap is at most the cap, and they halve going down: the run
	// allocates a few times the cap, not the 32 MiB (and more) of the 22nd level.
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 8*limit {
		t.Errorf("run allocated %d MiB, want at most %d MiB", alloc>>20, 8*limit>>20)
	}
	t.Logf("the run allocated %d KiB", alloc>>10)
}

// The cap counts branches as they finish: once their total is past it the run stops,
// and a branch still running is cancelled rather than awaited.
func TestWideFanOutOutputCap(t *testing.T) {
	big := strings.Repeat("x", 400)
	p := mock.New(mock.Script{
		"a":    {{Stdout: big}},
		"b":    {{Stdout: big}},
		"c":    {{Stdout: big}},
		"slow": {{Stdout: "late", Delay: 30 * time.Second}},
	})
	e := &runtime.Executor{Provider: p, MaxParallel: 4}
	runtime.SetOutputLimit(e, 1000)
	start := time.Now()
	res := run(t, e, fanOut(cmd("a"), cmd("b"), cmd("c"), cmd("slow")))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run took %v: the slow branch should be cancelled", d)
	}
	want := "fan_out(a, b, c, …) output exceeds 1000 bytes (the JSON array of its branches' outputs; stage outputs and graph outputs are each capped)"
	if res.Error != want {
		t.Errorf("Error = %q,\nwant %q", res.Error, want)
	}
	status(t, res, map[string]runtime.StageStatus{"a": runtime.StatusOK, "slow": runtime.StatusCanceled})
	if sr := res.Stages["slow"]; !strings.HasSuffix(sr.Error, want) {
		t.Errorf("slow: %q, want it to name the fan_out's failure", sr.Error)
	}
}

// An array of exactly the cap passes, byte for byte what json.Marshal writes; one byte
// over fails.
func TestFanOutOutputCapBoundary(t *testing.T) {
	outs := []string{"<a&b>\n", "\"q\"\\", "é\u2028\x01", "\xff"}
	wantJSON, err := json.Marshal(outs)
	if err != nil {
		t.Fatal(err)
	}
	script := mock.Script{}
	var branches []runtime.Node
	for i, o := range outs {
		name := string(rune('a' + i))
		script[name] = []mock.Reply{{Stdout: o}}
		branches = append(branches, cmd(name))
	}
	for _, tc := range []struct {
		limit int
		ok    bool
	}{{len(wantJSON), true}, {len(wantJSON) - 1, false}} {
		e := &runtime.Executor{Provider: mock.New(script)}
		runtime.SetOutputLimit(e, tc.limit)
		res := run(t, e, fanOut(branches...))
		if res.OK != tc.ok {
			t.Errorf("limit %d: OK=%v Error=%q, want OK=%v", tc.limit, res.OK, res.Error, tc.ok)
		}
		if tc.ok && res.Output != string(wantJSON) {
			t.Errorf("Output = %q, want json.Marshal's %q", res.Output, wantJSON)
		}
	}
}
