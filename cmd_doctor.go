package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/voidbox/voidbox/chv"
	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/qemu"
)

func runDoctor(args []string, env *cliEnv) int {
	fs := newFlagSet("doctor", "", "Say which VMMs and accelerators work here (from probe boots, not from file existence),\nthe guest image's status, and the exact fix for each missing piece.\nExit 0 when some microVM sandbox can run here.", env)
	vs := addVMFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if err := vs.validate(); err != nil {
		fmt.Fprintf(env.stderr, "voidbox doctor: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := env.stdout
	row := func(name, status, detail string) {
		fmt.Fprintf(out, "%-18s %-8s %s\n", name, status, detail)
	}

	img, imgErr := guestimage.Resolve(vs.kernel, vs.initramfs)
	if imgErr != nil {
		row("guest image", "MISSING", imgErr.Error())
	} else {
		detail := img.Kernel + " + " + img.Initramfs
		if img.Release != "" {
			detail += fmt.Sprintf(" (kernel %s, initramfs sha256 %.12s)", img.Release, img.SHA256)
		}
		row("guest image", "ok", detail)
	}

	d := qemu.Diagnose(ctx, qemu.Options{Accel: vs.accel}, img.Kernel, img.Initramfs)
	qemuOK := d.QEMUError == ""
	if qemuOK {
		row("qemu", "ok", d.QEMUPath+" "+d.QEMUVersion)
	} else {
		detail := d.QEMUError
		if !strings.Contains(detail, "apt-get install qemu-system-x86") { // the usual error says it already
			detail += "; fix: apt-get install qemu-system-x86"
		}
		row("qemu", "MISSING", detail)
	}
	kvmWorks := false
	switch {
	case !d.KVMDevice:
		row("kvm", "absent", "/dev/kvm does not exist: QEMU runs guests with TCG software emulation")
	case d.KVMProbe != nil && d.KVMProbe.OK:
		kvmWorks = true
		row("kvm", "ok", "a probe boot of the guest image under KVM succeeded")
	case d.KVMProbe != nil:
		// Detail says "KVM probe boot failed: why" already.
		row("kvm", "BROKEN", "/dev/kvm exists, but "+d.KVMProbe.Detail+"; QEMU uses TCG (software emulation)")
	case d.KVMProbeError != "":
		row("kvm", "unknown", "probe could not run: "+d.KVMProbeError)
	case !qemuOK:
		row("kvm", "unknown", "/dev/kvm exists; install QEMU (see above) so a probe boot can tell whether it works")
	default:
		row("kvm", "unknown", "/dev/kvm exists; build the guest image ('voidbox guest build') so a probe boot can tell whether it works")
	}
	if d.VhostVsock {
		row("vhost-vsock", "ok", "/dev/vhost-vsock: the agent channel is virtio-vsock")
	} else {
		row("vhost-vsock", "absent", "the agent channel is a virtio-serial port (works everywhere QEMU does)")
	}
	if d.Virtiofsd {
		row("virtiofsd", "ok", d.VirtiofsdPath)
	} else {
		row("virtiofsd", "MISSING", d.VirtiofsdPath+" not found; fix: apt-get install qemu-system-common (needed for mounts)")
	}

	chvOK := false
	if path, err := chv.Available(); err != nil {
		row("cloud-hypervisor", "absent", err.Error())
	} else if version, err := chv.Version(ctx, path); err != nil {
		row("cloud-hypervisor", "BROKEN", err.Error())
	} else if err := chv.KVMUsable(); err != nil {
		row("cloud-hypervisor", "unusable", version+": "+err.Error())
	} else if imgErr != nil {
		row("cloud-hypervisor", "unknown", version+": build the guest image so a probe boot can tell whether it works")
	} else if ok, detail := chv.New(chv.Options{Binary: path}).ProbeBoot(ctx, img.Kernel, img.Initramfs); ok {
		chvOK = true
		row("cloud-hypervisor", "ok", version+": "+detail)
	} else {
		row("cloud-hypervisor", "BROKEN", version+": probe boot failed: "+detail)
	}

	var choice string
	switch {
	case imgErr != nil:
		choice = "none until the guest image is built: run 'voidbox guest build' (or 'make guest')"
	case chvOK:
		choice = "vm on cloud-hypervisor/kvm"
	case qemuOK && kvmWorks:
		choice = "vm on qemu/kvm"
	case qemuOK:
		choice = "vm on qemu/tcg (software emulation: correct but slower)"
	default:
		choice = "none: install QEMU (apt-get install qemu-system-x86); meanwhile --sandbox local runs stages without isolation"
	}
	fmt.Fprintf(out, "\n--sandbox auto uses: %s\n", choice)
	if imgErr != nil || (!qemuOK && !chvOK) {
		return exitFailed
	}
	return exitOK
}
