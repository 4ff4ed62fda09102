package starlark

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/voidbox/voidbox/stdlib"
	sk "go.starlark.net/starlark"
)

// StdlibPrefix starts a module name that refers to the embedded standard library.
const StdlibPrefix = "@stdlib//"

// moduleLocal is the thread-local holding the name of the module a thread executes; load()
// resolves relative names against its directory.
const moduleLocal = "voidbox.module"

// replModule is the module name of REPL input; relative loads resolve against the cwd.
const replModule = "<stdin>"

// loader resolves and executes load()ed modules for one program. Each module executes once;
// later loads get the cached globals, or the cached error when it failed. Loading happens
// synchronously on the loading thread, so the loader needs no locking.
type loader struct {
	h     *host
	cache map[string]*moduleEntry // by key: absolute host path or @stdlib//name
	stack []moduleRef             // modules being executed, outermost first
	fsys  fs.FS                   // @stdlib tree
}

type moduleEntry struct {
	done    bool // false while the module executes: meeting it again is a cycle
	globals sk.StringDict
	err     error
}

// moduleRef names a module two ways: key identifies it, name is what users read (a path
// relative to the cwd when the program was given relatively, or @stdlib//x.star) and is
// the filename its code runs under, so builtins can resolve paths from call frames.
type moduleRef struct{ key, name string }

func newLoader(h *host) *loader {
	return &loader{h: h, cache: map[string]*moduleEntry{}, fsys: stdlib.FS}
}

// execMain runs the program's main file; it takes part in cycle detection like a module.
func (l *loader) execMain(filename string, src []byte) (sk.StringDict, error) {
	ref := moduleRef{key: hostKey(filename), name: filename}
	l.cache[ref.key] = &moduleEntry{}
	return l.execModule(ref, src)
}

// load is the Thread.Load hook.
func (l *loader) load(thread *sk.Thread, module string) (sk.StringDict, error) {
	from, _ := thread.Local(moduleLocal).(string)
	ref, err := resolveModule(from, module)
	if err != nil {
		return nil, err
	}
	if e, ok := l.cache[ref.key]; ok {
		if !e.done {
			return nil, l.cycleError(ref)
		}
		return e.globals, e.err
	}
	e := &moduleEntry{}
	l.cache[ref.key] = e
	src, err := l.read(ref)
	if err == nil {
		src, err = PrepareSource(ref.name, src)
	}
	if err == nil {
		e.globals, err = l.execModule(ref, src)
	}
	e.err = briefFileError(module, err)
	e.done = true
	return e.globals, e.err
}

// briefFileError drops the path from a FileError about the module load() named: the
// interpreter already says "cannot load d.star: ", so "d.star: " again would repeat it.
// A path that differs from what load() said (resolved against the loading file's
// directory) stays, since it tells the reader where voidbox looked.
func briefFileError(module string, err error) error {
	var fe *FileError
	if errors.As(err, &fe) && fe.Path == module {
		return &FileError{Why: fe.Why, Err: fe.Err}
	}
	return err
}

// execModule runs one module on its own thread, which inherits loader, runner, context
// and print from the host.
func (l *loader) execModule(ref moduleRef, src []byte) (sk.StringDict, error) {
	l.stack = append(l.stack, ref)
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()
	t := l.h.newThread(ref.name)
	defer l.h.release(t)
	t.SetLocal(moduleLocal, ref.name)
	return sk.ExecFileOptions(FileOptions(), t, ref.name, src, l.h.predeclared)
}

func (l *loader) cycleError(ref moduleRef) error {
	names := []string{}
	for i, m := range l.stack {
		if m.key == ref.key {
			for _, c := range l.stack[i:] {
				names = append(names, c.name)
			}
			break
		}
	}
	names = append(names, ref.name)
	return fmt.Errorf("load cycle: %s", strings.Join(names, " -> "))
}

func (l *loader) read(ref moduleRef) ([]byte, error) {
	if rest, ok := strings.CutPrefix(ref.name, StdlibPrefix); ok {
		f, err := l.fsys.Open(rest)
		if err != nil {
			return nil, &FileError{Path: ref.name, Why: "no such module in the standard library", Err: err}
		}
		defer f.Close()
		return readBounded(f, ref.name)
	}
	return ReadSource(ref.name)
}

// resolveModule turns a load() argument into a module, relative to the loading module from.
// Its errors do not repeat the module name: the interpreter prefixes "cannot load NAME: ".
func resolveModule(from, module string) (moduleRef, error) {
	if !strings.HasSuffix(module, ".star") {
		return moduleRef{}, errors.New("a module name must end in .star")
	}
	if strings.HasPrefix(module, "@") {
		repo, rest, ok := strings.Cut(module[1:], "//")
		if !ok {
			return moduleRef{}, errors.New("a repository module looks like @stdlib//name.star")
		}
		if repo != "stdlib" {
			return moduleRef{}, fmt.Errorf("unknown repository @%s; the only repository is @stdlib", repo)
		}
		return stdlibRef(rest)
	}
	if rest, ok := strings.CutPrefix(from, StdlibPrefix); ok {
		// A library loads its siblings relative to itself, never host files.
		if path.IsAbs(module) {
			return moduleRef{}, errors.New("a @stdlib module cannot load host files")
		}
		return stdlibRef(path.Join(path.Dir(rest), module))
	}
	name := filepath.Clean(module)
	if !filepath.IsAbs(module) {
		name = filepath.Join(moduleDir(from), module)
	}
	return moduleRef{key: hostKey(name), name: name}, nil
}

func stdlibRef(rest string) (moduleRef, error) {
	if !fs.ValidPath(rest) {
		return moduleRef{}, errors.New("it escapes @stdlib (paths inside @stdlib are relative and contain no \"..\" or leading \"/\")")
	}
	name := StdlibPrefix + rest
	return moduleRef{key: name, name: name}, nil
}

// moduleDir is the directory relative loads resolve against.
func moduleDir(from string) string {
	if from == "" || from == replModule {
		return "."
	}
	return filepath.Dir(from)
}

// hostKey identifies a host module by absolute path so "a/../b.star" and "b.star" match.
func hostKey(name string) string {
	if abs, err := filepath.Abs(name); err == nil {
		return abs
	}
	return filepath.Clean(name)
}
