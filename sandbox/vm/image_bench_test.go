package vm

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/voidbox/voidbox/internal/ocitest"
	"github.com/voidbox/voidbox/internal/vmtest"
	"github.com/voidbox/voidbox/oci"
	"github.com/voidbox/voidbox/runtime"
)

// BenchmarkImageBoxStart times a cold box to its first exec with a cached Debian image
// as its root (pulled and made into a disk before the timer starts), beside the same
// box on the guest image's own userland in the same run:
//
//	go test -run '^$' -bench ImageBoxStart -benchtime 5x ./sandbox/vm
func BenchmarkImageBoxStart(b *testing.B) {
	vmtest.Require(b)
	reg := ocitest.StartDistribution(b)
	ref := reg.Ref("voidbox/debian-python:bookworm")
	ocitest.Push(b, ref, ocitest.DebianPython(b))
	s, err := oci.Open(oci.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if img, err := s.Pull(ctx, ref, oci.PullOptions{}); err != nil {
		b.Fatal(err)
	} else if _, err := s.Disk(ctx, img); err != nil {
		b.Fatal(err)
	}
	img := vmtest.Image(b)
	for _, c := range []struct {
		name  string
		image string
		cmd   []string
	}{
		{"initramfs", "", []string{"true"}},
		{"debian-image", ref, []string{"true"}},
		{"debian-image-python3", ref, []string{"python3", "-c", "pass"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := New(Options{VMM: vmtest.TCG(b), Kernel: img.Kernel, Initramfs: img.Initramfs, Images: s, ImagePull: oci.PullMissing})
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				sb, err := p.Open(ctx, runtime.SandboxSpec{Name: "bench", MemoryMB: 256, Image: c.image})
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				res, err := sb.Exec(ctx, runtime.ExecRequest{Args: c.cmd, Stdout: io.Discard, Stderr: io.Discard})
				cancel()
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("first exec: %v, exit %d", err, res.ExitCode)
				}
				b.StopTimer()
				sb.Close()
				b.StartTimer()
			}
		})
	}
}
