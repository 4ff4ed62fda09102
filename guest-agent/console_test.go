package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer records each Write separately.
type lockedBuffer struct {
	mu     sync.Mutex
	writes []string
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, string(p))
	return len(p), nil
}

func (b *lockedBuffer) get() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.writes...)
}

// Boot lines go out in one write when the agent serves; later lines each in their own.
func TestConsoleBatchesBootLines(t *testing.T) {
	out := &lockedBuffer{}
	c := newConsole()
	c.out = out
	c.logf("mounted")
	c.logf("boot config from fw_cfg")
	if w := out.get(); len(w) != 0 {
		t.Fatalf("boot lines written before the agent serves: %q", w)
	}
	c.logf("serving on virtio-serial /dev/vport0p1")
	c.endBatch()
	c.logf("host closed the session")
	w := out.get()
	if len(w) != 2 || strings.Count(w[0], "\n") != 3 || !strings.Contains(w[0], "] mounted\n") || !strings.Contains(w[0], "] serving on") || !strings.Contains(w[1], "] host closed") {
		t.Fatalf("writes %q: want the three boot lines in one write, then the next line alone", w)
	}
}

// A boot that hangs before serving still shows its lines, batchFlushAfter later.
func TestConsoleFlushesAHeldBatch(t *testing.T) {
	out := &lockedBuffer{}
	c := newConsole()
	c.out = out
	c.logf("stage limits: memory 384 MiB")
	deadline := time.Now().Add(batchFlushAfter + 5*time.Second)
	for len(out.get()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w := out.get(); len(w) != 1 || !strings.Contains(w[0], "stage limits") {
		t.Fatalf("writes %q: want the held line written by the timer", w)
	}
	c.endBatch() // nothing left: no empty write
	if w := out.get(); len(w) != 1 {
		t.Fatalf("writes %q after endBatch, want no more", w)
	}
	var b bytes.Buffer
	c.out = &b
	c.logf("after")
	if !strings.Contains(b.String(), "] after\n") {
		t.Fatalf("a line after the batch was not written at once: %q", b.String())
	}
}
