package runtime

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkJSONString fails unless appendJSONString writes s as json.Marshal does and
// jsonStringLen predicts that length (and stops counting past a smaller limit).
func checkJSONString(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
		t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
	}
	if got := jsonStringLen(s, len(want)); got != len(want) {
		t.Fatalf("jsonStringLen(%q) = %d, want %d", s, got, len(want))
	}
	if got := jsonStringLen(s, len(want)-1); got <= len(want)-1 {
		t.Fatalf("jsonStringLen(%q, limit %d) = %d, want more than the limit", s, len(want)-1, got)
	}
}

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	var all []byte
	for b := range 256 {
		all = append(all, byte(b))
	}
	for _, s := range []string{
		"", "plain", `"quoted" \back\slash`, "<script>&amp;</script>", "\b\f\n\r\t\x00\x1f\x7f",
		"é ü 日本 🎉", "\u2028\u2029", "\xff\xfe bad \xc3", "\xe2\x80", string(all),
	} {
		checkJSONString(t, s)
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "<>&", "\u2028\xff", "日本\n"} {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func TestLabel(t *testing.T) {
	a, b, c, d, e := stage("a"), stage("b"), stage("c"), stage("d"), stage("e")
	for want, n := range map[string]Node{
		"fan_out(a)":                &FanOut{Nodes: []Node{a}},
		"pipe(a, fan_out(b, …))":    &Pipe{Nodes: []Node{a, &FanOut{Nodes: []Node{b, c}}}},
		"fan_out(pipe(a), b, c, …)": &FanOut{Nodes: []Node{&Pipe{Nodes: []Node{a}}, b, c, d, e}},
		"fan_out(fan_out())":        &FanOut{Nodes: []Node{&FanOut{Nodes: []Node{&Pipe{}}}}},
	} {
		if got := label(n); got != want {
			t.Errorf("label = %q, want %q", got, want)
		}
	}
}
