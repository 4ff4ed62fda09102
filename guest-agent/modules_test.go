package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const fakeDep = `kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/fuse/fuse.ko:
`

func TestLoadModulesOrder(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(fakeDep), 0o644); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	var logs []string
	err := loadModules(dir, []string{"virtio-mmio", "virtio_console", "overlay", "vmw_vsock_virtio_transport", "virtiofs", "fuse"},
		func(p string) error { loaded = append(loaded, modName(p)); return nil },
		func(f string, a ...any) { logs = append(logs, f) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console", "vmw_vsock_virtio_transport_common", "vsock", "vmw_vsock_virtio_transport", "fuse", "virtiofs"}
	// Exact order is not the contract; dependencies-first and once each is.
	if len(loaded) != len(want) {
		t.Fatalf("loaded %v, want the set %v", loaded, want)
	}
	pos := map[string]int{}
	for i, m := range loaded {
		if _, dup := pos[m]; dup {
			t.Fatalf("%s loaded twice: %v", m, loaded)
		}
		pos[m] = i
	}
	for _, l := range strings.Split(strings.TrimSpace(fakeDep), "\n") {
		mod, deps, _ := strings.Cut(l, ":")
		for _, d := range strings.Fields(deps) {
			if pos[modName(d)] > pos[modName(mod)] {
				t.Errorf("%s loaded before its dependency %s: %v", modName(mod), modName(d), loaded)
			}
		}
	}
	if !slices.Contains(loaded, "virtio_mmio") || len(logs) != 1 {
		t.Errorf("overlay should be reported as built in once; logs %v", logs)
	}
}

func TestLoadModulesNoList(t *testing.T) {
	if err := loadModules(t.TempDir(), nil, nil, nil); err != nil {
		t.Errorf("no modules requested must be a no-op, got %v", err)
	}
	err := loadModules(t.TempDir(), []string{"fuse"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("missing modules.dep: err = %v", err)
	}
}

func TestParseModulesDepRejectsGarbage(t *testing.T) {
	if _, err := parseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("a line without ':' must be rejected")
	}
}
