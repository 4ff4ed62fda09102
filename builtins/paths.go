package builtins

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/voidbox/voidbox/stdlib"
	"go.starlark.net/starlark"
)

// StdlibPrefix starts the module names of the embedded library, "@stdlib//text.star".
const StdlibPrefix = "@stdlib//"

// maxSkillFile bounds a skill file read at skill() time: skills go into prompts, and
// a huge file is almost certainly a mistake (a binary, a log) rather than a skill.
const maxSkillFile = 1 << 20

// callerFile is the .star file whose code called the running builtin; relative paths
// in skill() and mount() are relative to it, also inside a loaded library.
func callerFile(thread *starlark.Thread) string {
	if thread.CallStackDepth() < 2 {
		return ""
	}
	return thread.CallFrame(1).Pos.Filename()
}

// userPos is where the user's own code called the running builtin: the innermost
// calling frame in a file of the user's (not the embedded library, not a Go builtin).
// A box that @stdlib//text.star's upper() builds is thereby declared at the user's
// upper(...) call, which is the line an error about that box must point at.
func userPos(thread *starlark.Thread) string {
	for i := 1; i < thread.CallStackDepth(); i++ {
		pos := thread.CallFrame(i).Pos
		if f := pos.Filename(); !strings.HasPrefix(f, StdlibPrefix) && f != builtinFile {
			return pos.String()
		}
	}
	if thread.CallStackDepth() >= 2 {
		return thread.CallFrame(1).Pos.String()
	}
	return ""
}

// builtinFile is the file name Starlark gives the frames of Go builtins.
const builtinFile = "<builtin>"

// inStdlib reports whether a module name is in the embedded library and returns its
// slash path inside stdlib.FS.
func inStdlib(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, StdlibPrefix)
	return rest, ok
}

// hostDir is the directory host-relative paths resolve against for code in file:
// the file's directory, or the working directory for code without a file (REPL,
// "-c" snippets, whose names look like "<stdin>").
func hostDir(file string) string {
	if file == "" || strings.HasPrefix(file, "<") {
		return "."
	}
	return filepath.Dir(file)
}

// resolveHost turns p, as written in file, into an absolute host path.
func resolveHost(file, p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(hostDir(file), p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", p, err)
	}
	return abs, nil
}

// readSkillFile reads the file a "file:PATH" skill names. It returns the path to
// record in runtime.Skill.Path (absolute host path or "@stdlib//...") and the text.
func readSkillFile(caller, p string) (where, content string, err error) {
	if p == "" {
		return "", "", fmt.Errorf("\"file:\" needs a path, e.g. \"file:skills/review.md\"")
	}
	if rest, ok := inStdlib(p); ok {
		return readStdlibFile(rest)
	}
	if dir, ok := inStdlib(caller); ok && !filepath.IsAbs(p) {
		return readStdlibFile(path.Join(path.Dir(dir), p))
	}
	abs, err := resolveHost(caller, p)
	if err != nil {
		return "", "", err
	}
	f, err := os.Open(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("skill file %s does not exist", abs)
	}
	if err != nil {
		return "", "", fmt.Errorf("open skill file: %w", err)
	}
	defer f.Close()
	text, err := readBounded(abs, f)
	return abs, text, err
}

func readStdlibFile(rel string) (string, string, error) {
	where := StdlibPrefix + rel
	if !fs.ValidPath(rel) {
		return "", "", fmt.Errorf("skill file %s is outside the embedded library", where)
	}
	f, err := stdlib.FS.Open(rel)
	if err != nil {
		return "", "", fmt.Errorf("skill file %s does not exist in the embedded library", where)
	}
	defer f.Close()
	text, err := readBounded(where, f)
	return where, text, err
}

// readBounded reads at most maxSkillFile bytes and fails on anything bigger or on a
// directory.
func readBounded(name string, f fs.File) (string, error) {
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return "", fmt.Errorf("skill file %s is a directory; name a markdown file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSkillFile+1))
	if err != nil {
		return "", fmt.Errorf("read skill file %s: %w", name, err)
	}
	if len(data) > maxSkillFile {
		return "", fmt.Errorf("skill file %s is larger than the 1 MiB limit", name)
	}
	return string(data), nil
}
