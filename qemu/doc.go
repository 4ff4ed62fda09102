// Package qemu is the QEMU microVM driver: it implements runtime.VMM and
// runtime.Machine with `qemu-system-x86_64 -M microvm`, virtio-mmio devices,
// the agent channel (vhost-vsock where the host has it, else virtio-serial
// over a unix socket), a serial console log, QMP for status and shutdown,
// and virtiofsd for shares. It also owns accelerator selection (a cached KVM
// probe boot), the boot-time floor benchmark and the host diagnosis `voidbox
// doctor` prints. The state-dir and process conventions it shares with the
// chv driver (including the sweep after a voidbox crash) live in
// internal/vmstate.
package qemu
