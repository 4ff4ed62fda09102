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

	"github.com/getkin/kin-openapi/openapi3"
)

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
