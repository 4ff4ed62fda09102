package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxModulesDep bounds modules.dep (Debian's full kernel has ~400 KiB).
const maxModulesDep = 8 << 20

// modName normalises a module name or path: base name without .ko*, dashes as
// underscores (the kernel treats them as the same).
func modName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// depGraph maps a module name to its path and its direct dependencies' paths, as
// listed in a depmod-format modules.dep ("kernel/x/a.ko: kernel/y/b.ko ...").
type depGraph map[string]depEntry

type depEntry struct {
	path string
	deps []string
}

func parseModulesDep(r io.Reader) (depGraph, error) {
	g := depGraph{}
	sc := bufio.NewScanner(io.LimitReader(r, maxModulesDep))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(text, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return nil, fmt.Errorf("modules.dep line %d: want \"module.ko: deps...\", got %q", line, text)
		}
		mod = strings.TrimSpace(mod)
		g[modName(mod)] = depEntry{path: mod, deps: strings.Fields(deps)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return g, nil
}

// loadOrder returns the module paths to load for names, each after its
// dependencies, each once. Names absent from the graph are built into the kernel
// and are reported in builtin.
func (g depGraph) loadOrder(names []string) (order, builtin []string) {
	done := map[string]bool{}
	var visit func(path string, depth int)
	visit = func(path string, depth int) {
		name := modName(path)
		if done[name] || depth > 64 { // depth: modules.dep has no cycles; never loop on a corrupt one
			return
		}
		done[name] = true
		e, ok := g[name]
		if !ok {
			e = depEntry{path: path}
		}
		for _, d := range e.deps {
			visit(d, depth+1)
		}
		order = append(order, e.path)
	}
	for _, n := range names {
		if _, ok := g[modName(n)]; !ok {
			builtin = append(builtin, n)
			continue
		}
		visit(g[modName(n)].path, 0)
	}
	return order, builtin
}

// readModuleList reads /etc/voidbox/modules: one module name per line, # comments.
func readModuleList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, l)
		}
	}
	return names, nil
}

// loadModules loads names (with dependencies, in modules.dep order) from dir, the
// /lib/modules/<release> directory, through load (finitModule in the guest).
func loadModules(dir string, names []string, load func(path string) error, logf func(string, ...any)) error {
	return newModuleLoader(dir, load, logf).ensure(names...)
}

// finitModule loads one uncompressed .ko; an already loaded module is fine.
func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}
