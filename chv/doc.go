// Package chv is voidbox's Cloud Hypervisor driver. It owns the cloud-hypervisor
// process (started with --api-socket, seccomp on and an event monitor), the REST
// client on that socket (vm.create / vm.boot / vm.info / vm.shutdown / vmm.shutdown),
// the VmConfig a voidbox box becomes, the hybrid-vsock transport to the guest agent,
// and one virtiofsd per shared directory. It implements runtime.VMM and
// runtime.Machine, and runtime.Snapshotter for warm start (vm.pause, vm.snapshot,
// vm.restore and vm.resume, see snapshot.go); nothing it starts outlives the
// Machine it returned.
package chv
