package builtins

import (
	"fmt"
	"github.com/voidbox/voidbox/guest-agent/proto"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// Argument checks shared by the builtins. Each returns an error whose text is the
// part after "builtin: " and names the parameter, what was given and what is right;
// the caller adds the builtin's name.

var (
	stageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	cliNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
	// OCI reference pieces (distribution/reference grammar, slightly relaxed).
	refDomainRE    = regexp.MustCompile(`^(localhost|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(:[0-9]+)?$`)
	refComponentRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	refTagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	refDigestRE    = regexp.MustCompile(`^[a-z0-9]+([+._-][a-z0-9]+)*:[A-Fa-f0-9]{32,}$`)
)

// typeErr is the one wording for "wrong type": "memory_mb must be an int, got string".
func typeErr(param, want string, got starlark.Value) error {
	return fmt.Errorf("%s must be %s, got %s", param, want, got.Type())
}

func wantString(param string, v starlark.Value) (string, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return "", typeErr(param, "a string", v)
	}
	return string(s), nil
}

// wantOptString accepts None (returned as "", false) or a string.
func wantOptString(param string, v starlark.Value) (string, bool, error) {
	if v == nil || v == starlark.None {
		return "", false, nil
	}
	s, err := wantString(param, v)
	return s, true, err
}

func wantBool(param string, v starlark.Value) (bool, error) {
	b, ok := v.(starlark.Bool)
	if !ok {
		return false, typeErr(param, "a bool", v)
	}
	return bool(b), nil
}

// wantIntIn checks an int parameter against an inclusive range.
func wantIntIn(param string, v starlark.Value, lo, hi int) (int, error) {
	i, ok := v.(starlark.Int)
	if !ok {
		return 0, typeErr(param, "an int", v)
	}
	n, ok := i.Int64()
	if !ok || n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%s must be between %d and %d, got %s", param, lo, hi, i)
	}
	return int(n), nil
}

// wantList returns the elements of a list or tuple.
func wantList(param, want string, v starlark.Value) ([]starlark.Value, error) {
	var seq starlark.Indexable
	switch v := v.(type) {
	case *starlark.List:
		seq = v
	case starlark.Tuple:
		seq = v
	default:
		return nil, typeErr(param, want, v)
	}
	out := make([]starlark.Value, seq.Len())
	for i := range out {
		out[i] = seq.Index(i)
	}
	return out, nil
}

func wantStringList(param string, v starlark.Value) ([]string, error) {
	elems, err := wantList(param, "a list of strings", v)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		s, ok := e.(starlark.String)
		if !ok {
			return nil, typeErr(fmt.Sprintf("%s[%d]", param, i), "a string", e)
		}
		out[i] = string(s)
	}
	return out, nil
}

// wantEnv checks a dict of environment variables: valid names, string values.
func wantEnv(param string, v starlark.Value) (map[string]string, error) {
	d, ok := v.(*starlark.Dict)
	if !ok {
		return nil, typeErr(param, "a dict of strings to strings", v)
	}
	out := make(map[string]string, d.Len())
	for _, kv := range d.Items() {
		k, ok := kv[0].(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s keys must be strings, got %s", param, kv[0].Type())
		}
		if !envNameRE.MatchString(string(k)) {
			return nil, fmt.Errorf("%s key %q is not a valid environment variable name (letters, digits and '_', not starting with a digit)", param, string(k))
		}
		val, ok := kv[1].(starlark.String)
		if !ok {
			return nil, typeErr(fmt.Sprintf("%s[%q]", param, string(k)), "a string", kv[1])
		}
		out[string(k)] = string(val)
	}
	return out, nil
}

func checkStageName(name string) error {
	if name == "" {
		return fmt.Errorf("name must not be empty")
	}
	if !stageNameRE.MatchString(name) {
		return fmt.Errorf("name %q must match [a-z0-9][a-z0-9_.-]{0,62} (lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters)", name)
	}
	return nil
}

// parseTimeout accepts a Go duration string greater than zero.
func parseTimeout(param string, v starlark.Value) (time.Duration, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return 0, fmt.Errorf("%s must be a duration string like \"10m\" or \"90s\", got %s", param, v.Type())
	}
	d, err := time.ParseDuration(string(s))
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a duration (use Go syntax like \"10m\", \"90s\", \"1h30m\")", param, string(s))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s must be greater than zero, got %q", param, string(s))
	}
	return d, nil
}

// checkImageRef checks an OCI reference roughly the way registries do:
// [domain[:port]/]path[:tag][@digest], path components lower-case.
func checkImageRef(ref string) error {
	bad := func(why string) error {
		return fmt.Errorf("%q is not a valid OCI image reference (%s; e.g. \"docker.io/library/alpine:3.20\")", ref, why)
	}
	if ref == "" {
		return fmt.Errorf("image reference must not be empty")
	}
	if len(ref) > 4096 {
		return bad("longer than 4096 characters")
	}
	name := ref
	if at := strings.IndexByte(name, '@'); at >= 0 {
		if !refDigestRE.MatchString(name[at+1:]) {
			return bad("the digest after '@' must look like sha256:<hex>")
		}
		name = name[:at]
	}
	if colon := strings.LastIndexByte(name, ':'); colon > strings.LastIndexByte(name, '/') {
		if !refTagRE.MatchString(name[colon+1:]) {
			return bad("the tag must be letters, digits, '_', '.', '-', at most 128 characters")
		}
		name = name[:colon]
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !refDomainRE.MatchString(parts[0]) {
			return bad(fmt.Sprintf("registry %q is not a host name", parts[0]))
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !refComponentRE.MatchString(p) {
			return bad(fmt.Sprintf("path component %q must be lower-case letters and digits separated by '.', '_' or '-'", p))
		}
	}
	return nil
}

// checkGuestPath applies the guest agent's own rule for mount points, so that
// check refuses exactly what the guest would.
func checkGuestPath(param, p string) error {
	if err := proto.CheckMountPath(p); err != nil {
		return fmt.Errorf("%s: %w", param, err)
	}
	return nil
}

// checkHTTPURL requires an http or https URL with a host.
func checkHTTPURL(param, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q must be an http or https URL with a host (e.g. \"https://example.com/mcp\")", param, raw)
	}
	return nil
}
