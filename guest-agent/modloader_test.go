package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newTestLoader(t *testing.T) (*moduleLoader, *[]string, *[]string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(fakeDep), 0o644); err != nil {
		t.Fatal(err)
	}
	var loaded, logs []string
	l := newModuleLoader(dir, func(p string) error {
		if !strings.HasPrefix(p, dir+"/kernel/") || !strings.HasSuffix(p, ".ko") {
			t.Errorf("load got path %q, want a .ko under %s/kernel", p, dir)
		}
		loaded = append(loaded, modName(p))
		return nil
	}, func(f string, a ...any) { logs = append(logs, f) })
	return l, &loaded, &logs
}

// The boot loads only the transport; a feature asking later gets the rest without
// reloading what the boot loaded.
func TestModuleLoaderLazy(t *testing.T) {
	l, loaded, logs := newTestLoader(t)
	if err := l.ensure("virtio_mmio", "virtio_console"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console"}; !slices.Equal(*loaded, want) {
		t.Fatalf("boot loaded %v, want %v", *loaded, want)
	}
	*loaded = nil
	if err := l.ensure("virtiofs", "virtio_console"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"fuse", "virtiofs"}; !slices.Equal(*loaded, want) {
		t.Fatalf("feature loaded %v, want only %v (the rest is loaded already)", *loaded, want)
	}
	*loaded = nil
	if err := l.ensure("overlay"); err != nil {
		t.Fatal(err)
	}
	if len(*loaded) != 0 || len(*logs) != 1 {
		t.Errorf("overlay is not in modules.dep: loaded %v, logs %v; want nothing loaded and one built-in notice", *loaded, *logs)
	}
}

// A failed load is reported with the module's name and retried by the next ensure.
func TestModuleLoaderFailure(t *testing.T) {
	l, _, _ := newTestLoader(t)
	fail := true
	inner := l.load
	l.load = func(p string) error {
		if fail && modName(p) == "virtio" {
			return errors.New("finit_module: no memory")
		}
		return inner(p)
	}
	err := l.ensure("virtio_console")
	if err == nil || !strings.Contains(err.Error(), "load module virtio:") {
		t.Fatalf("ensure = %v, want the failing module named", err)
	}
	fail = false
	if err := l.ensure("virtio_console"); err != nil {
		t.Fatalf("retry after a failed load: %v", err)
	}
	if !l.loaded["virtio"] || !l.loaded["virtio_console"] {
		t.Errorf("loaded set after retry: %v", l.loaded)
	}
}

func TestTransportModules(t *testing.T) {
	all := []string{"virtio_mmio", "virtio-console", "virtio_net", "vmw_vsock_virtio_transport", "overlay"}
	for _, tc := range []struct {
		name       string
		ids        []string
		configured []string
		want       []string
	}{
		{"serial", []string{"0x0003"}, all, []string{"virtio_console"}},
		{"serial wins over vsock", []string{"0x0013", "0x0003\n"}, all, []string{"virtio_console"}},
		{"vsock only", []string{"0x0013", "0x0001"}, all, []string{"vmw_vsock_virtio_transport"}},
		{"nothing visible yet", nil, all, []string{"virtio_console", "vmw_vsock_virtio_transport"}},
		{"console built in", []string{"0x0003"}, []string{"virtio_mmio", "virtio_net"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transportModules(tc.ids, tc.configured); !slices.Equal(got, tc.want) {
				t.Errorf("transportModules(%q, %q) = %q, want %q", tc.ids, tc.configured, got, tc.want)
			}
		})
	}
}
