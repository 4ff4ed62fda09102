package vm

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/runtime"
)

// BenchmarkGuestSampling times one exec on a booted box with guest sampling off and on
// (a sample every 500ms, as the executor asks), side by side:
//
//	go test -run '^$' -bench GuestSampling -benchtime 5x ./sandbox/vm
//
// true: the shortest exec, which pays for the baseline reading and the final sample;
// busy: a shell loop of about two seconds under TCG, which pays for four or five
// samples.
func BenchmarkGuestSampling(b *testing.B) {
	vmtest.Require(b)
	img := vmtest.Image(b)
	p, err := New(Options{VMM: vmtest.TCG(b), Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	sb, err := p.Open(ctx, runtime.SandboxSpec{Name: "bench", MemoryMB: 512, VCPUs: 1})
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close()
	for _, cmd := range []struct {
		name string
		args []string
	}{
		{"true", []string{"true"}},
		{"busy", []string{"sh", "-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done"}},
	} {
		for _, sampling := range []bool{false, true} {
			name := cmd.name + "/sampling-off"
			if sampling {
				name = cmd.name + "/sampling-on"
			}
			b.Run(name, func(b *testing.B) {
				samples := 0
				for range b.N {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					if sampling {
						ctx = runtime.WithGuestSampler(ctx, func(runtime.GuestSample) { samples++ })
					}
					res, err := sb.Exec(ctx, runtime.ExecRequest{Args: cmd.args, Stdout: io.Discard, Stderr: io.Discard})
					cancel()
					if err != nil || res.ExitCode != 0 {
						b.Fatalf("%v: exit %d, %v", cmd.args, res.ExitCode, err)
					}
				}
				b.ReportMetric(float64(samples)/float64(b.N), "samples/op")
			})
		}
	}
}
