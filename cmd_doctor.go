package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/voidbox/voidbox/chv"
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

	img, art, imgErr := resolveGuest(ctx, vs.guestSource, env.stderr)
	if imgErr != nil {
		row("guest image", "MISSING", imgErr.Error())
	} else {
		detail := img.Kernel + " + " + img.Initramfs
		if img.Release != "" {
			detail += fmt.Sprintf(" (kernel %s, initramfs sha256 %.12s)", img.Release, img.SHA256)
		}
		if art != nil {
			detail += ", from " + pinned(art)
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
	accel, accelFrom := vs.accelChoice()
	kvmWorks := false
	switch {
	case !d.KVMDevice:
		row("kvm", "absent", "/dev/kvm does not exist; "+tcgFallback(accel, accelFrom))
	case d.KVMProbe != nil && d.KVMProbe.OK:
		kvmWorks = true
		row("kvm", "ok", "a probe boot of the guest image under KVM succeeded")
	case d.KVMProbe != nil:
		// Detail says "KVM probe boot failed: why" already.
		row("kvm", "BROKEN", "/dev/kvm exists, but "+d.KVMProbe.Detail+"; "+tcgFallback(accel, accelFrom))
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

	choice, vmm := sandboxChoice(findings{image: imgErr == nil, chv: chvOK, qemu: qemuOK, kvm: kvmWorks, accel: accel, accelFrom: accelFrom})
	fmt.Fprintf(out, "\n--sandbox auto uses: %s\n", choice)
	if vmm == "" {
		return exitFailed
	}
	fmt.Fprintf(out, "\n%s", isolationText(vmm))
	return exitOK
}

// tcgFallback says what QEMU does without KVM under the accelerator asked for.
func tcgFallback(accel, from string) string {
	if accel == "kvm" {
		return from + " kvm: QEMU will not run (no fallback to TCG)"
	}
	return "QEMU uses TCG (software emulation)"
}

// findings are what doctor learned that decides the sandbox: which pieces work, and
// the accelerator asked for (accelFrom "" when nobody asked: auto).
type findings struct {
	image, chv, qemu, kvm bool
	accel, accelFrom      string
}

// sandboxChoice says what `--sandbox auto` uses given f, the way openVM decides, and
// the VMM/accelerator pair ("qemu/tcg"); vmm is "" when nothing can run.
func sandboxChoice(f findings) (choice, vmm string) {
	switch {
	case !f.image:
		return "none until the guest image is built: run 'voidbox guest build' (or 'make guest')", ""
	case f.chv:
		return "vm on cloud-hypervisor/kvm", "cloud-hypervisor/kvm"
	case !f.qemu:
		return "none: install QEMU (apt-get install qemu-system-x86); meanwhile --sandbox local runs stages without isolation", ""
	case f.accel == "kvm" && !f.kvm:
		return fmt.Sprintf("none: %s kvm asks for KVM, which does not work here, and voidbox does not fall back to TCG; --accel auto or tcg runs under TCG", f.accelFrom), ""
	case f.kvm && f.accel != "tcg":
		return "vm on qemu/kvm", "qemu/kvm"
	}
	return "vm on qemu/tcg (software emulation: correct but slower, and not a security boundary; see below)", "qemu/tcg"
}

// isolationLayers are what voidbox puts between a stage and the host besides the VM
// itself, in the order a stage meets them. The README's Sandboxes section says the same.
var isolationLayers = []string{
	"guest kernel: no loadable modules, no 32-bit syscall entry (ia32, x32), no io_uring, no bpf(), no user namespaces",
	"guest agent: runs only the box's command, checked against its allow list (allow=), for one authenticated session per boot",
	"stage processes: uid 1000, no_new_privs, a seccomp allow-list that denies every non-x86_64 syscall",
	"limits: a cgroup per stage (memory.max, pids.max) and rlimits (NPROC, NOFILE, FSIZE, no core dumps)",
}

// isolationText says what stands between a stage and this host on vmm: the boundary,
// which under TCG is an emulator QEMU itself does not count as a security boundary,
// then the layers voidbox adds.
func isolationText(vmm string) string {
	var b strings.Builder
	layers := isolationLayers
	switch vmm {
	case "qemu/tcg":
		b.WriteString("isolation: under TCG the boundary between a stage and this host is QEMU's software emulator,\n" +
			"which QEMU does not treat as a security boundary (its security policy covers only KVM or other\n" +
			"hardware-accelerated guests with virtio devices). Make KVM work for a hardware boundary.\n")
	case "qemu/kvm":
		b.WriteString("isolation: the boundary between a stage and this host is hardware virtualization (KVM).\n")
	default:
		b.WriteString("isolation: the boundary between a stage and this host is hardware virtualization (KVM), through Cloud Hypervisor.\n")
	}
	if strings.HasPrefix(vmm, "qemu/") {
		layers = append(layers[:len(layers):len(layers)], "QEMU: its own seccomp filter (-sandbox on)"+qemuUserText())
	} else {
		layers = append(layers[:len(layers):len(layers)], "Cloud Hypervisor: its own seccomp filter (--seccomp true)")
	}
	b.WriteString("voidbox adds these layers:\n")
	for _, l := range layers {
		fmt.Fprintf(&b, "  - %s\n", l)
	}
	return b.String()
}

// qemuUserText says which user QEMU runs as under this voidbox (doctor's layer list).
func qemuUserText() string {
	u, err := qemu.RunAsUser()
	switch {
	case err != nil:
		return "; voidbox runs as root but cannot drop QEMU's privileges: " + err.Error()
	case u == "":
		return "; QEMU runs as voidbox's own (non-root) user"
	}
	return "; QEMU runs as " + u + ", chrooted into its state dir (voidbox runs as root)"
}
