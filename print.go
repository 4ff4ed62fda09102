package main

import (
	"fmt"
	"io"

	"go.starlark.net/starlark"
)

// printTo sends the program's print() lines to w.
func printTo(w io.Writer) func(*starlark.Thread, string) {
	return func(_ *starlark.Thread, msg string) { fmt.Fprintln(w, msg) }
}
