// Package qemu is the QEMU microVM driver: it implements runtime.VMM and
// runtime.Machine with `qemu-system-x86_64 -M microvm`, virtio-mmio devices,
// the agent channel (vhost-vsock where the host has it, else virtio-serial
// over a unix socket), a serial console voidbox captures with a cap, QMP for
// status and shutdown, and virtiofsd for shares. The per-VM boot config (with
// the agent secret) reaches the guest as a fw_cfg item read from a 0600 file,
// never on QEMU's command line; a root voidbox runs QEMU as an unprivileged
// user, chrooted into its state dir (confine.go). It also owns accelerator selection (a cached KVM
// probe boot), the boot-time floor benchmark and the host diagnosis `voidbox
// doctor` prints. The state-dir and process conventions it shares with the
// chv driver (including the sweep after a voidbox crash) live in
// internal/vmstate.
package qemu
