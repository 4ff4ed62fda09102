//go:build tools

// Package main pins dependencies that later packages import, so go mod tidy keeps them.
package main

import (
	_ "github.com/bazelbuild/buildtools/build"
	_ "github.com/chzyer/readline"
	_ "github.com/creack/pty"
	_ "github.com/getkin/kin-openapi/openapi3filter"
	_ "github.com/hashicorp/yamux"
	_ "github.com/mdlayher/vsock"
	_ "github.com/spf13/pflag"
	_ "go.starlark.net/lib/json"
	_ "go.starlark.net/repl"
	_ "go.starlark.net/starlark"
	_ "golang.org/x/sys/unix"
)

func main() {}
