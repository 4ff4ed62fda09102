package claudecode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxMetadata bounds the registry's package document (about 130 KB today,
// abbreviated, for some 200 versions).
const maxMetadata = 32 << 20

// packument is the part of the registry's package document Install reads.
type packument struct {
	Name     string                  `json:"name"`
	DistTags map[string]string       `json:"dist-tags"`
	Versions map[string]versionEntry `json:"versions"`
}

type versionEntry struct {
	Version string `json:"version"`
	Dist    struct {
		Integrity string `json:"integrity"`
		Tarball   string `json:"tarball"`
	} `json:"dist"`
}

// release is one version's tarball as the registry describes it.
type release struct {
	Version   string
	Tarball   string
	Integrity string // sha512-BASE64
	Latest    string // the registry's latest, for messages
}

// CheckRegistry says whether raw can be Options.Registry.
func CheckRegistry(raw string) error {
	_, err := checkURL("registry", raw)
	return err
}

// checkURL allows https, and plain http only to a loopback host (a test or
// a local mirror): the integrity Install checks comes over the same channel.
func checkURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, raw, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s %q has no host: want https://HOST[/PATH]", what, raw)
	}
	switch u.Scheme {
	case "https":
		return u, nil
	case "http":
		if isLoopback(u.Hostname()) {
			return u, nil
		}
		return nil, fmt.Errorf("%s %q: plain http is allowed only to a loopback host; use https", what, raw)
	}
	return nil, fmt.Errorf("%s %q: scheme %q, want https", what, raw, u.Scheme)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resolve asks the registry for the package's document and picks version
// (Latest: the dist-tag).
func resolve(ctx context.Context, client *http.Client, registry, version string) (*release, error) {
	base, err := checkURL("registry", registry)
	if err != nil {
		return nil, err
	}
	// A scoped name is one path segment with its slash escaped.
	doc := strings.TrimSuffix(base.String(), "/") + "/" + strings.Replace(PackageName, "/", "%2f", 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, doc, nil)
	if err != nil {
		return nil, err
	}
	// The abbreviated document has dist-tags and every version's dist, and is
	// a fraction of the full one.
	req.Header.Set("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", registry, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		hint := ""
		if resp.StatusCode == http.StatusNotFound {
			hint = fmt.Sprintf(" (the registry has no package %s)", PackageName)
		}
		return nil, fmt.Errorf("registry: GET %s: %s%s: %s", doc, resp.Status, hint, strings.TrimSpace(string(snippet)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return nil, fmt.Errorf("registry: GET %s: %w", doc, err)
	}
	if len(body) > maxMetadata {
		return nil, fmt.Errorf("registry: GET %s: the package document is over %d MiB", doc, maxMetadata>>20)
	}
	var p packument
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("registry: GET %s: not a package document: %w", doc, err)
	}
	if p.Name != PackageName {
		return nil, fmt.Errorf("registry: GET %s: the document is for package %q, want %q", doc, p.Name, PackageName)
	}
	latest := p.DistTags["latest"]
	want := version
	if version == Latest {
		if latest == "" {
			return nil, fmt.Errorf("registry: %s has no latest dist-tag; name a version with --agent-version", PackageName)
		}
		if err := CheckVersion(latest); err != nil || latest == Latest {
			return nil, fmt.Errorf("registry: %s's latest dist-tag %q is not a version", PackageName, latest)
		}
		want = latest
	}
	v, ok := p.Versions[want]
	if !ok {
		return nil, &UnknownVersionError{Version: want, Latest: latest}
	}
	if v.Dist.Tarball == "" {
		return nil, fmt.Errorf("registry: %s %s has no dist.tarball", PackageName, want)
	}
	if _, err := parseIntegrity(v.Dist.Integrity); err != nil {
		return nil, fmt.Errorf("registry: %s %s: dist.integrity: %w", PackageName, want, err)
	}
	if _, err := checkURL(fmt.Sprintf("%s %s dist.tarball", PackageName, want), v.Dist.Tarball); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &release{Version: want, Tarball: v.Dist.Tarball, Integrity: v.Dist.Integrity, Latest: latest}, nil
}

// UnknownVersionError is the registry having no such version.
type UnknownVersionError struct {
	Version string
	Latest  string // the registry's latest dist-tag, "" if none
}

func (e *UnknownVersionError) Error() string {
	hint := "the registry names no latest version"
	if e.Latest != "" {
		hint = "the latest is " + e.Latest
	}
	return fmt.Sprintf("claude-code %s is not in the registry's %s (%s)", e.Version, PackageName, hint)
}
