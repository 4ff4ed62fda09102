package ocitest

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestDistributionServesAPush(t *testing.T) {
	d := StartDistribution(t)
	img := NewImage(t, v1.Config{Env: []string{"A=1"}}, "amd64", TarLayer(t, Tar(t, File("hello", "hi")), false))
	digest := Push(t, d.Ref("t/app:v1"), img)
	r, _ := name.ParseReference(d.Ref("t/app:v1"), name.Insecure)
	desc, err := remote.Head(r)
	if err != nil || desc.Digest.String() != digest {
		t.Fatalf("head after push: %v, %v (want %s)", desc, err, digest)
	}
	d.Stop()
	if _, err := http.Get("http://" + d.Host + "/v2/"); err == nil {
		t.Fatal("the registry still answers after Stop")
	}
}
