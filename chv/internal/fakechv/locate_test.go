package fakechv

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testLayout is a repository checkout in a temp dir: <top>/repo holds go.mod
// and the tests run in <top>/repo/chv; <top>/shared is where the project's
// copy goes; XDG_CACHE_HOME is <top>/cache. The pin is made up, so these tests
// do not need the real description.
type testLayout struct {
	top, repo, shared, cache string
	pin                      Pin
	good                     []byte
}

func newLayout(t *testing.T) *testLayout {
	t.Helper()
	top := t.TempDir()
	l := &testLayout{
		top:    top,
		repo:   filepath.Join(top, "repo"),
		shared: filepath.Join(top, "shared", "contracts", "cloud-hypervisor-openapi.yaml"),
		good:   []byte("openapi: 3.0.1\n# the pinned bytes\n"),
	}
	sum := sha256.Sum256(l.good)
	l.pin = Pin{Commit: strings.Repeat("ab", 20), Path: "vmm/src/api/openapi/cloud-hypervisor.yaml", SHA256: hex.EncodeToString(sum[:])}
	l.cache = filepath.Join(top, "cache", "voidbox", "contracts", "cloud-hypervisor-openapi-"+l.pin.Commit+".yaml")
	write(t, filepath.Join(l.repo, "go.mod"), []byte("module example.com/x\n"))
	pkg := filepath.Join(l.repo, "chv")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)
	t.Setenv(SpecEnv, "")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(top, "cache"))
	return l
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantFound(t *testing.T, l *testLayout, want string) {
	t.Helper()
	got, err := findSpec(l.pin)
	if err != nil {
		t.Fatalf("findSpec: %v, want %s", err, want)
	}
	if got != want {
		t.Errorf("findSpec = %s, want %s", got, want)
	}
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("findSpec succeeded, want an error containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\ndoes not contain %q", err, p)
		}
	}
}

func TestFindSpecEnvOverrideWins(t *testing.T) {
	l := newLayout(t)
	explicit := filepath.Join(l.top, "mine.yaml")
	write(t, explicit, l.good)
	write(t, l.shared, l.good)
	write(t, l.cache, l.good)
	t.Setenv(SpecEnv, explicit)
	wantFound(t, l, explicit)
}

// An explicit file that is wrong is refused, not silently replaced by a good
// copy elsewhere: the user asked for that file.
func TestFindSpecEnvWrongSHA256Refused(t *testing.T) {
	l := newLayout(t)
	explicit := filepath.Join(l.top, "old.yaml")
	write(t, explicit, []byte("openapi: 3.0.1\n# an older revision\n"))
	write(t, l.shared, l.good)
	t.Setenv(SpecEnv, explicit)
	_, err := findSpec(l.pin)
	wantErr(t, err, SpecEnv+"="+explicit, "sha256 is ", "want "+l.pin.SHA256, l.pin.Commit, "point "+SpecEnv+" at a copy of")
}

func TestFindSpecEnvMissingFile(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, l.good)
	missing := filepath.Join(l.top, "nope.yaml")
	t.Setenv(SpecEnv, missing)
	_, err := findSpec(l.pin)
	wantErr(t, err, SpecEnv+"="+missing, "no such file")
}

func TestFindSpecSharedBeforeCache(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, l.good)
	write(t, l.cache, l.good)
	wantFound(t, l, l.shared)
}

func TestFindSpecSharedWrongSHA256Refused(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, []byte("edited\n"))
	write(t, l.cache, l.good)
	_, err := findSpec(l.pin)
	wantErr(t, err, l.shared+": sha256 is ", "want "+l.pin.SHA256, "replace it with", l.pin.Commit)
}

func TestFindSpecCache(t *testing.T) {
	l := newLayout(t)
	write(t, l.cache, l.good)
	wantFound(t, l, l.cache)
}

func TestFindSpecCacheWrongSHA256Refused(t *testing.T) {
	l := newLayout(t)
	write(t, l.cache, []byte("truncated"))
	_, err := findSpec(l.pin)
	wantErr(t, err, l.cache+": sha256 is ", "want "+l.pin.SHA256, "delete it and run 'make contracts'")
}

func TestFindSpecMissingEverywhere(t *testing.T) {
	l := newLayout(t)
	_, err := findSpec(l.pin)
	want := "Cloud Hypervisor's OpenAPI description not found (looked in: " + l.shared + " (and shared/contracts/ in each directory above it), " + l.cache +
		"); run 'make contracts' to fetch it at commit " + l.pin.Commit + ", or set VOIDBOX_CHV_OPENAPI"
	if err == nil || err.Error() != want {
		t.Errorf("findSpec error:\n got %v\nwant %s", err, want)
	}
}

// A relative XDG_CACHE_HOME is invalid per the XDG spec; scripts/contracts.sh
// falls back to ~/.cache then, and so must the locator.
func TestCachePathRelativeXDGUsesHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	pin := Pin{Commit: strings.Repeat("0", 40)}
	for _, xdg := range []string{"", "relative/cache"} {
		t.Setenv("XDG_CACHE_HOME", xdg)
		got, err := CachePath(pin)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(home, ".cache", "voidbox", "contracts", "cloud-hypervisor-openapi-"+pin.Commit+".yaml")
		if got != want {
			t.Errorf("XDG_CACHE_HOME=%q: CachePath = %s, want %s", xdg, got, want)
		}
	}
}

func TestSpecPinIsComplete(t *testing.T) {
	p, err := SpecPin()
	if err != nil {
		t.Fatal(err)
	}
	if p.Path != "vmm/src/api/openapi/cloud-hypervisor.yaml" {
		t.Errorf("pinned path %q, want vmm/src/api/openapi/cloud-hypervisor.yaml", p.Path)
	}
}

func TestParsePinErrors(t *testing.T) {
	good := "CHV_OPENAPI_COMMIT=" + strings.Repeat("a", 40) + "\nCHV_OPENAPI_PATH=x.yaml\nCHV_OPENAPI_SHA256=" + strings.Repeat("b", 64) + "\n"
	if _, err := parsePin("# comment\n\n" + good); err != nil {
		t.Fatalf("parsePin(good) = %v", err)
	}
	for _, tc := range []struct{ text, want string }{
		{good + "CHV_OPENAPI_URL=x\n", `openapi.pin:4: "CHV_OPENAPI_URL=x" is not one of`},
		{strings.Replace(good, strings.Repeat("a", 40), "ae44c297", 1), `CHV_OPENAPI_COMMIT="ae44c297", want a 40-hex commit id`},
		{strings.Replace(good, strings.Repeat("b", 64), strings.Repeat("B", 64), 1), "CHV_OPENAPI_SHA256=\"" + strings.Repeat("B", 64) + "\", want 64 hex digits"},
		{strings.Replace(good, "x.yaml", "", 1), "CHV_OPENAPI_PATH is empty"},
	} {
		_, err := parsePin(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsePin(%q) = %v, want an error containing %q", tc.text, err, tc.want)
		}
	}
}

// A clone deeper than the project's own checkout (CI clones anywhere) still finds
// shared/contracts in a directory further up.
func TestFindSpecSharedFurtherUp(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, l.good)
	deep := filepath.Join(l.top, "ci", "work", "repo")
	write(t, filepath.Join(deep, "go.mod"), []byte("module example.com/x\n"))
	if err := os.MkdirAll(filepath.Join(deep, "chv"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(deep, "chv"))
	got, err := findSpec(l.pin)
	if err != nil || got != l.shared {
		t.Fatalf("findSpec from %s = %q, %v; want %s", deep, got, err, l.shared)
	}
}
