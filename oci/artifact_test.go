package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	ot "github.com/voidbox/voidbox/internal/ocitest"
)

const testArtifactType = "application/vnd.example.thing.v1+json"

func newTestArtifact(t *testing.T, config string) v1.Image {
	t.Helper()
	a, err := NewArtifact(testArtifactType, []byte(config),
		ArtifactLayer{MediaType: "application/vnd.example.blob", Title: "one", Data: []byte("first blob\n")},
		ArtifactLayer{MediaType: "application/vnd.example.other", Data: []byte("second blob\n")})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestArtifactPushPullAndList(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	s := openStore(t, Options{})
	ctx := context.Background()
	a := newTestArtifact(t, `{"what":"thing"}`)
	digest, err := s.Push(ctx, reg.Ref("things/a:v1"), a)
	if err != nil {
		t.Fatal(err)
	}
	if again := newTestArtifact(t, `{"what":"thing"}`); mustDigest(t, again) != digest || mustDigest(t, a) != digest {
		t.Fatalf("the same inputs give another digest: %s vs %s", mustDigest(t, again), digest)
	}
	raw, err := a.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != testArtifactType || m.Config.MediaType != testArtifactType || len(m.Layers) != 2 ||
		m.Layers[0].Annotations[TitleAnnotation] != "one" || m.Layers[1].Annotations != nil {
		t.Fatalf("manifest %s", raw)
	}

	img := pull(t, s, reg.Ref("things/a:v1"), PullOptions{ArtifactType: testArtifactType})
	if img.Digest != digest || img.ArtifactType != testArtifactType || len(img.Layers) != 2 ||
		img.Layers[0].MediaType != "application/vnd.example.blob" || img.Layers[1].MediaType != "application/vnd.example.other" {
		t.Fatalf("pulled %+v", img)
	}
	if cfg, err := s.RawConfig(img); err != nil || string(cfg) != `{"what":"thing"}` {
		t.Fatalf("config %q, %v", cfg, err)
	}
	for i, want := range []string{"first blob\n", "second blob\n"} {
		rc, err := s.OpenBlob(img.Layers[i].Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != want {
			t.Errorf("layer %d holds %q, want %q", i, got, want)
		}
	}
	// Listed with its size, and a prune keeps its blobs: the cache knows what it holds.
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Digest != digest || list[0].Size != img.Size || img.Size == 0 {
		t.Fatalf("list %+v %v", list, err)
	}
	before := blobCount(t, s)
	if rep, err := s.Prune(ctx); err != nil || rep.Blobs != 0 {
		t.Fatalf("prune deleted %+v of a cached artifact: %v", rep, err)
	}
	if before != 4 || blobCount(t, s) != 4 {
		t.Fatalf("%d blobs before the prune, %d after; want manifest, config and 2 layers", before, blobCount(t, s))
	}
	// By digest, with the registry gone: from the cache.
	reg.Server.Close()
	if cached := pull(t, s, reg.Ref("things/a@"+digest), PullOptions{ArtifactType: testArtifactType}); !cached.FromCache || cached.Warning != "" {
		t.Fatalf("offline pull by digest: %+v", cached)
	}
	if _, err := s.Disk(ctx, img); !errors.Is(err, ErrWrongType) {
		t.Fatalf("disk of an artifact: %v, want ErrWrongType", err)
	}
}

func TestArtifactAndImageAreNotMistaken(t *testing.T) {
	reg := ot.NewRegistry(t, nil)
	ctx := context.Background()
	s := openStore(t, Options{})
	if _, err := s.Push(ctx, reg.Ref("things/a:v1"), newTestArtifact(t, "{}")); err != nil {
		t.Fatal(err)
	}
	ot.Push(t, reg.Ref("app:v1"), ot.NewImage(t, v1.Config{}, "amd64", ot.TarLayer(t, ot.Tar(t, ot.File("etc/motd", "hi\n")), false)))

	cases := []struct{ ref, want, msg string }{
		{reg.Ref("things/a:v1"), "", `it is an OCI artifact of type "` + testArtifactType + `", not a container image`},
		{reg.Ref("app:v1"), testArtifactType, `it is a container image, not an artifact of type "` + testArtifactType + `"`},
		{reg.Ref("things/a:v1"), "application/vnd.example.else", `it is an artifact of type "` + testArtifactType + `", not "application/vnd.example.else"`},
	}
	for _, c := range cases {
		fresh := openStore(t, Options{})
		_, err := fresh.Pull(ctx, c.ref, PullOptions{ArtifactType: c.want})
		if !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), "pull "+c.ref+": wrong media type: "+c.msg) {
			t.Errorf("pull %s wanting %q: %v; want ErrWrongType saying %q", c.ref, c.want, err, c.msg)
		}
		// Refused from the manifest: no layer was downloaded.
		if n := blobCount(t, fresh); n != 0 {
			t.Errorf("pull %s wanting %q left %d blobs in the cache", c.ref, c.want, n)
		}
	}
	// Cached under one type, asked for by digest as another: still refused.
	img := pull(t, s, reg.Ref("things/a:v1"), PullOptions{ArtifactType: testArtifactType})
	if _, err := s.Pull(ctx, reg.Ref("things/a@"+img.Digest), PullOptions{}); !errors.Is(err, ErrWrongType) {
		t.Errorf("cached artifact pulled as an image by digest: %v", err)
	}
}

func TestPushErrors(t *testing.T) {
	reg := ot.NewRegistry(t, basicAuth)
	s := openStore(t, Options{})
	ctx := context.Background()
	a := newTestArtifact(t, "{}")
	_, err := s.Push(ctx, reg.Ref("things/a:v1"), a)
	if err == nil || !strings.Contains(err.Error(), "oci: push "+reg.Ref("things/a:v1")+": registry "+reg.Host+" refused access (HTTP 401") {
		t.Errorf("push without credentials: %v", err)
	}
	// With credentials in the Docker config, as for a pull.
	auth := base64.StdEncoding.EncodeToString([]byte("user:secret"))
	if err := os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Push(ctx, reg.Ref("things/a:v1"), a); err != nil || d != mustDigest(t, a) {
		t.Errorf("push with credentials: %s, %v", d, err)
	}
	if _, err := s.Push(ctx, "Bad Ref", a); !errors.Is(err, ErrBadReference) {
		t.Errorf("push to a bad reference: %v, want ErrBadReference", err)
	}
	if _, err := s.Push(ctx, reg.Ref("things/a@"+mustDigest(t, a)), a); !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), "push to a tag") {
		t.Errorf("push to a digest reference: %v", err)
	}
	if err := CheckReference("Bad Ref"); !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), `image reference "Bad Ref" is not valid; want [registry[:port]/]path`) {
		t.Errorf("CheckReference of a bad reference: %v", err)
	}
	if err := CheckReference(reg.Ref("things/a:v1")); err != nil {
		t.Errorf("CheckReference of a good reference: %v", err)
	}
	if _, err := NewArtifact("", nil); err == nil {
		t.Error("an artifact without a type was built")
	}
	if _, err := s.OpenBlob("sha256:../../etc"); err == nil {
		t.Error("OpenBlob took a digest that is not one")
	}
	if _, err := s.OpenBlob("sha256:" + strings.Repeat("0", 64)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenBlob of a blob not cached: %v", err)
	}
}
