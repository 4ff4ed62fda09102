package oci

import (
	"context"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

// BenchmarkDebianImage times what a box with image= costs before its VM boots, on a
// real distribution image (Debian bookworm minbase with python3, made by debootstrap,
// pushed to a docker-registry on 127.0.0.1), beside `crane export` of the same image
// in the same run (pull and flatten to a tar stream, go-containerregistry's own path):
//
//	go test -run '^$' -bench DebianImage -benchtime 3x ./oci
//
// cold: an empty cache pulls, unpacks and builds the ext4 disk; cached: the digest is
// in the cache (PullMissing), so the disk is reused without a registry round trip.
func BenchmarkDebianImage(b *testing.B) {
	reg := ot.StartDistribution(b)
	ref := reg.Ref("voidbox/debian-python:bookworm")
	ot.Push(b, ref, ot.DebianPython(b))
	ctx := context.Background()
	b.Run("crane-export", func(b *testing.B) {
		for range b.N {
			img, err := crane.Pull(ref, crane.Insecure)
			if err != nil {
				b.Fatal(err)
			}
			if err := crane.Export(img, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold-pull-unpack-disk", func(b *testing.B) {
		for range b.N {
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			img, err := s.Pull(ctx, ref, PullOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Disk(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		s, err := Open(Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		img, err := s.Pull(ctx, ref, PullOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Disk(ctx, img); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			img, err := s.Pull(ctx, ref, PullOptions{Policy: PullMissing})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Disk(ctx, img); err != nil {
				b.Fatal(err)
			}
		}
	})
}
