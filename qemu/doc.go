// Package qemu is the QEMU microVM driver: it implements runtime.VMM and
// runtime.Machine with `qemu-system-x86_64 -M microvm`, virtio-mmio devices,
// the agent channel (vhost-vsock where the host has it, else virtio-serial
// over a unix socket), a serial console log, QMP for status and shutdown,
// and virtiofsd for shares. It also owns accelerator selection (a cached KVM
// probe boot), the boot-time floor benchmark, the host diagnosis `voidbox
// doctor` prints, and the cleanup of VM processes and state directories left
// by a voidbox that died.
package qemu
