package fakechv

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SpecEnv names a file that overrides the search for the OpenAPI description.
const SpecEnv = "VOIDBOX_CHV_OPENAPI"

// sharedRel is where the project keeps its copy, relative to the repository
// root: the repository is normally checked out next to the project's shared/.
const sharedRel = "../shared/contracts/cloud-hypervisor-openapi.yaml"

// pinText is shared with scripts/contracts.sh so that the commit and checksum
// the tests demand and the ones `make contracts` fetches cannot drift apart.
//
//go:embed openapi.pin
var pinText string

// Pin says which Cloud Hypervisor OpenAPI description the tests accept.
type Pin struct {
	Commit string // full commit id in cloud-hypervisor/cloud-hypervisor
	Path   string // the file's path in that repository
	SHA256 string // hex sha256 of the file at Commit
}

// SpecPin returns the pinned commit, path and checksum from openapi.pin.
func SpecPin() (Pin, error) { return parsePin(pinText) }

func parsePin(text string) (Pin, error) {
	var p Pin
	fields := map[string]*string{
		"CHV_OPENAPI_COMMIT": &p.Commit,
		"CHV_OPENAPI_PATH":   &p.Path,
		"CHV_OPENAPI_SHA256": &p.SHA256,
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		dst := fields[k]
		if !ok || dst == nil {
			return Pin{}, fmt.Errorf("openapi.pin:%d: %q is not one of CHV_OPENAPI_COMMIT=, CHV_OPENAPI_PATH=, CHV_OPENAPI_SHA256=", n, line)
		}
		*dst = v
	}
	if !isHex(p.Commit, 40) {
		return Pin{}, fmt.Errorf("openapi.pin: CHV_OPENAPI_COMMIT=%q, want a 40-hex commit id", p.Commit)
	}
	if !isHex(p.SHA256, 64) {
		return Pin{}, fmt.Errorf("openapi.pin: CHV_OPENAPI_SHA256=%q, want 64 hex digits", p.SHA256)
	}
	if p.Path == "" {
		return Pin{}, errors.New("openapi.pin: CHV_OPENAPI_PATH is empty, want the file's path in the cloud-hypervisor repository")
	}
	return p, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// CachePath is where `make contracts` stores the downloaded description:
// $XDG_CACHE_HOME (when absolute, as the XDG spec requires) or ~/.cache,
// then voidbox/contracts/cloud-hypervisor-openapi-<commit>.yaml. The commit in
// the name keeps a stale download from matching a newer pin by accident.
// scripts/contracts.sh computes the same path.
func CachePath(p Pin) (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache directory: XDG_CACHE_HOME is not an absolute path and %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "voidbox", "contracts", "cloud-hypervisor-openapi-"+p.Commit+".yaml"), nil
}

// FindSpec locates Cloud Hypervisor's OpenAPI description, in this order:
// $VOIDBOX_CHV_OPENAPI (an explicit file: used or refused, never skipped),
// ../shared/contracts/cloud-hypervisor-openapi.yaml next to the repository
// root, then the cache that `make contracts` fills. The file found must have
// the pinned sha256, so every test validates against the same schema; a
// different file is an error that names it, rather than a silent fallback.
func FindSpec() (string, error) {
	pin, err := SpecPin()
	if err != nil {
		return "", err
	}
	return findSpec(pin)
}

func findSpec(pin Pin) (string, error) {
	if p := os.Getenv(SpecEnv); p != "" {
		if err := checkSpec(p, pin); err != nil {
			return "", fmt.Errorf("%s=%s: %w; point %s at a copy of %s", SpecEnv, p, err, SpecEnv, pin.describe())
		}
		return p, nil
	}
	var looked []string
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locate the repository root: %w", err)
	}
	if root, ok := repoRoot(wd); ok {
		looked = append(looked, filepath.Clean(filepath.Join(root, sharedRel))+" (and shared/contracts/ in each directory above it)")
		// ../shared next to the clone, or a shared/ further up: a clone may sit
		// deeper than the project's own checkout (CI clones anywhere).
		for _, p := range sharedCandidates(root) {
			if found, err := existing(p); err != nil {
				return "", err
			} else if found {
				if err := checkSpec(p, pin); err != nil {
					return "", fmt.Errorf("%s: %w; replace it with %s", p, err, pin.describe())
				}
				return p, nil
			}
		}
	} else {
		looked = append(looked, "../shared/contracts (no go.mod above "+wd+")")
	}
	if p, err := CachePath(pin); err != nil {
		looked = append(looked, err.Error())
	} else {
		looked = append(looked, p)
		if found, err := existing(p); err != nil {
			return "", err
		} else if found {
			if err := checkSpec(p, pin); err != nil {
				return "", fmt.Errorf("%s: %w; delete it and run 'make contracts' to fetch it again", p, err)
			}
			return p, nil
		}
	}
	// The test output starts with this sentence, and the product name is capitalised.
	//lint:ignore ST1005 a full sentence that names Cloud Hypervisor, not a wrapped fragment
	return "", fmt.Errorf("Cloud Hypervisor's OpenAPI description not found (looked in: %s); run 'make contracts' to fetch it at commit %s, or set %s",
		strings.Join(looked, ", "), pin.Commit, SpecEnv)
}

func (p Pin) describe() string {
	return fmt.Sprintf("cloud-hypervisor's %s at commit %s (sha256 %s)", p.Path, p.Commit, p.SHA256)
}

// sharedCandidates are shared/contracts/<file> in the repository root's parent
// and in every directory above it, nearest first.
func sharedCandidates(root string) []string {
	var out []string
	for dir := filepath.Dir(root); ; dir = filepath.Dir(dir) {
		out = append(out, filepath.Join(dir, "shared", "contracts", filepath.Base(sharedRel)))
		if dir == filepath.Dir(dir) {
			return out
		}
	}
}

// repoRoot is the nearest directory at or above dir holding go.mod: go test
// runs in the package directory, anywhere below the root.
func repoRoot(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// existing reports whether path exists; errors other than "not there"
// (permissions, a broken disk) are reported rather than treated as absent.
func existing(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("look for the OpenAPI description: %w", err)
}

// checkSpec verifies that path is the pinned file, byte for byte.
func checkSpec(path string, pin Pin) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != pin.SHA256 {
		return fmt.Errorf("sha256 is %s, want %s", got, pin.SHA256)
	}
	return nil
}
