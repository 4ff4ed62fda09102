package chv

import (
	"context"
	"testing"
	"time"
)

// The console file Cloud Hypervisor writes is followed: its lines reach
// VMConfig.ConsoleLine while the VM runs.
func TestConsoleLinesFollowed(t *testing.T) {
	cfg := testConfig(t)
	lines := make(chan string, 16)
	cfg.ConsoleLine = func(l string) { lines <- l }
	m, err := fakeDriver(t, "normal").boot(context.Background(), cfg)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() { m.Kill() })
	var got []string
	deadline := time.After(5 * time.Second)
	for len(got) == 0 || got[len(got)-1] != "fake guest booted" {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-deadline:
			t.Fatalf("console lines %q within 5s, want them to end with \"fake guest booted\"", got)
		}
	}
	if got[0] != "[    0.000000] Linux version fake" {
		t.Errorf("first console line %q, want the fake's first", got[0])
	}
	m.Kill()
	checkGone(t, m)
}
