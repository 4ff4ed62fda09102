package fakechv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runContracts runs the real scripts/contracts.sh from a copy of it placed in
// the temp layout, with l.pin written as the layout's openapi.pin, so the
// script sees l.shared as ../shared and fetches from a file:// URL instead
// of GitHub. It returns the exit code and the combined output.
func runContracts(t *testing.T, l *testLayout, env ...string) (int, string) {
	t.Helper()
	script, err := os.ReadFile(realScript)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(l.repo, "scripts", "contracts.sh"), script)
	pin := fmt.Sprintf("# test pin\nCHV_OPENAPI_COMMIT=%s\nCHV_OPENAPI_PATH=%s\nCHV_OPENAPI_SHA256=%s\n", l.pin.Commit, l.pin.Path, l.pin.SHA256)
	write(t, filepath.Join(l.repo, "chv", "internal", "fakechv", "openapi.pin"), []byte(pin))
	cmd := exec.Command("bash", filepath.Join(l.repo, "scripts", "contracts.sh"))
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + l.top,
		"XDG_CACHE_HOME=" + filepath.Join(l.top, "cache"),
		// Never the network: a download that is not overridden fails fast.
		"VOIDBOX_CHV_OPENAPI_URL=file://" + filepath.Join(l.top, "no-such-mirror.yaml"),
	}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("run contracts.sh: %v", err)
	}
	return 0, out.String()
}

// realScript is scripts/contracts.sh of this checkout, read before any test
// changes directory.
var realScript = func() string {
	wd, _ := os.Getwd()
	if root, ok := repoRoot(wd); ok {
		return filepath.Join(root, "scripts", "contracts.sh")
	}
	return "scripts/contracts.sh (no go.mod above " + wd + ")"
}()

func wantOutput(t *testing.T, code int, out string, wantCode int, parts ...string) {
	t.Helper()
	if (code == 0) != (wantCode == 0) {
		t.Errorf("contracts.sh exit code %d, want %d; output:\n%s", code, wantCode, out)
	}
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("contracts.sh output does not contain %q; output:\n%s", p, out)
		}
	}
}

func TestContractsScriptUsesShared(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, l.good)
	code, out := runContracts(t, l)
	wantOutput(t, code, out, 0, "contracts: using "+l.shared)
	if _, err := os.Stat(l.cache); err == nil {
		t.Errorf("contracts.sh cached %s although %s is present", l.cache, l.shared)
	}
}

func TestContractsScriptRefusesWrongShared(t *testing.T) {
	l := newLayout(t)
	write(t, l.shared, []byte("edited\n"))
	code, out := runContracts(t, l)
	wantOutput(t, code, out, 1, l.shared+" has sha256 ", "want "+l.pin.SHA256, "replace "+l.shared)
}

func TestContractsScriptRefusesWrongEnvFile(t *testing.T) {
	l := newLayout(t)
	explicit := filepath.Join(l.top, "old.yaml")
	write(t, explicit, []byte("old\n"))
	write(t, l.shared, l.good)
	code, out := runContracts(t, l, SpecEnv+"="+explicit)
	wantOutput(t, code, out, 1, explicit+" has sha256 ", "point VOIDBOX_CHV_OPENAPI at a copy of")
}

// The download lands where the locator looks, and the locator accepts it.
func TestContractsScriptFetchesIntoCache(t *testing.T) {
	l := newLayout(t)
	mirror := filepath.Join(l.top, "mirror.yaml")
	write(t, mirror, l.good)
	code, out := runContracts(t, l, "VOIDBOX_CHV_OPENAPI_URL=file://"+mirror)
	wantOutput(t, code, out, 0, "contracts: fetched to "+l.cache)
	wantFound(t, l, l.cache)
	// A second run finds the cache and does not download again.
	os.Remove(mirror)
	code, out = runContracts(t, l, "VOIDBOX_CHV_OPENAPI_URL=file://"+mirror)
	wantOutput(t, code, out, 0, "contracts: using "+l.cache)
}

func TestContractsScriptDeletesBadDownload(t *testing.T) {
	l := newLayout(t)
	mirror := filepath.Join(l.top, "mirror.yaml")
	write(t, mirror, []byte("<html>rate limited</html>\n"))
	code, out := runContracts(t, l, "VOIDBOX_CHV_OPENAPI_URL=file://"+mirror)
	wantOutput(t, code, out, 1, "has sha256 ", "want "+l.pin.SHA256, "nothing was cached")
	entries, err := os.ReadDir(filepath.Dir(l.cache))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("after a bad download the cache holds %s, want nothing", e.Name())
	}
}

// Without network and without a copy, the failure says what to do.
func TestContractsScriptDownloadFails(t *testing.T) {
	l := newLayout(t)
	code, out := runContracts(t, l)
	wantOutput(t, code, out, 1, "contracts: download failed", "set VOIDBOX_CHV_OPENAPI", "or place it at "+l.shared)
}
