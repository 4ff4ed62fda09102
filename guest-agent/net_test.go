package main

import (
	"slices"
	"testing"
)

// The network loads its driver (virtio_net, or tun for the forwarder) only when the image
// ships it as a module; a kernel with it built in (the voidbox kernel has no modules and
// no modules.dep) needs nothing loaded.
func TestEnsureShipped(t *testing.T) {
	l, loaded, logs := newTestLoader(t)
	if err := ensureShipped(l, []string{"virtio_mmio", "virtiofs"}, "virtiofs"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"fuse", "virtio_ring", "virtio", "virtiofs"}; !slices.Equal(*loaded, want) {
		t.Errorf("a shipped module: loaded %v, want %v", *loaded, want)
	}
	*loaded = nil
	if err := ensureShipped(l, []string{"virtio_mmio", "virtiofs"}, "tun"); err != nil || len(*loaded) != 0 || len(*logs) != 0 {
		t.Errorf("a module the image does not ship: %v, loaded %v, logged %v; want nothing done", err, *loaded, *logs)
	}
	builtin := newModuleLoader(t.TempDir(), func(string) error { t.Error("loaded a module"); return nil }, t.Logf)
	if err := ensureShipped(builtin, nil, "virtio_net"); err != nil {
		t.Errorf("an image without modules: %v, want nothing to do", err)
	}
}
