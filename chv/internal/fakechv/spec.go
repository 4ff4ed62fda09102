// Package fakechv is a stand-in for Cloud Hypervisor used only by the chv
// driver's tests: an HTTP handler that serves the VMM's REST API with the real
// server's state machine and status codes, validating every request and every
// response against the published OpenAPI description, and a hybrid-vsock muxer
// that speaks the CONNECT/OK protocol.
package fakechv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// SpecEnv names a file that overrides the search for the OpenAPI description.
const SpecEnv = "VOIDBOX_CHV_OPENAPI"

const specRel = "shared/contracts/cloud-hypervisor-openapi.yaml"

// FindSpec locates cloud-hypervisor-openapi.yaml: $VOIDBOX_CHV_OPENAPI if set,
// else shared/contracts/ in the working directory or any parent, or in a
// parent's sibling "../shared/contracts" (the layout where the repository is
// cloned next to shared/). The error lists every place it looked.
func FindSpec() (string, error) {
	if p := os.Getenv(SpecEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", SpecEnv, p, err)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	var looked []string
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, c := range []string{filepath.Join(dir, specRel), filepath.Join(dir, "..", specRel)} {
			c = filepath.Clean(c)
			looked = append(looked, c)
			if _, err := os.Stat(c); err == nil {
				return c, nil
			}
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return "", fmt.Errorf("cloud-hypervisor-openapi.yaml not found; set %s or put it at one of:\n  %s", SpecEnv, strings.Join(looked, "\n  "))
}

// LoadSpec loads and validates the OpenAPI description at path.
func LoadSpec(path string) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate %s: %w", path, err)
	}
	if doc.Paths.Find("/vm.create") == nil {
		return nil, errors.New(path + " has no /vm.create: not Cloud Hypervisor's API description")
	}
	return doc, nil
}
