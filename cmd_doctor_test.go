package main

import (
	"os"
	"strings"
	"testing"
)

// doctor's choice follows openVM's: Cloud Hypervisor first, then QEMU with KVM if it
// works and TCG was not asked for, else TCG; but --accel kvm (or $VOIDBOX_ACCEL=kvm)
// with KVM broken runs nothing, since nothing falls back.
func TestSandboxChoice(t *testing.T) {
	all := findings{image: true, chv: false, qemu: true, kvm: false, accel: "auto"}
	with := func(f func(*findings)) findings { c := all; f(&c); return c }
	cases := []struct {
		name string
		f    findings
		vmm  string // "" when nothing can run
		want string // in the choice
	}{
		{"no image", with(func(f *findings) { f.image = false }), "", "voidbox guest build"},
		{"cloud hypervisor", with(func(f *findings) { f.chv = true }), "cloud-hypervisor/kvm", "vm on cloud-hypervisor/kvm"},
		{"no qemu", with(func(f *findings) { f.qemu = false }), "", "apt-get install qemu-system-x86"},
		{"auto, kvm works", with(func(f *findings) { f.kvm = true }), "qemu/kvm", "vm on qemu/kvm"},
		{"auto, kvm broken", all, "qemu/tcg", "not a security boundary"},
		{"tcg asked for, kvm works", with(func(f *findings) { f.kvm, f.accel, f.accelFrom = true, "tcg", "--accel" }), "qemu/tcg", "vm on qemu/tcg"},
		{"kvm asked for, works", with(func(f *findings) { f.kvm, f.accel, f.accelFrom = true, "kvm", "--accel" }), "qemu/kvm", "vm on qemu/kvm"},
		{"kvm asked for, broken", with(func(f *findings) { f.accel, f.accelFrom = "kvm", "$VOIDBOX_ACCEL" }), "", "none: $VOIDBOX_ACCEL kvm asks for KVM, which does not work here, and voidbox does not fall back to TCG"},
	}
	for _, c := range cases {
		choice, vmm := sandboxChoice(c.f)
		if vmm != c.vmm || !strings.Contains(choice, c.want) {
			t.Errorf("%s: choice %q, vmm %q; want vmm %q and a choice containing %q", c.name, choice, vmm, c.vmm, c.want)
		}
	}
}

// Under TCG doctor says the boundary is QEMU's emulator, which QEMU's security policy
// does not cover, and under every VMM it lists the layers voidbox adds.
func TestIsolationText(t *testing.T) {
	qemuUser := "chrooted into its state dir" // voidbox is root: QEMU drops to voidbox-vmm or nobody
	if os.Geteuid() != 0 {
		qemuUser = "QEMU runs as voidbox's own (non-root) user"
	}
	layers := []string{"no loadable modules", "ia32", "io_uring", "bpf()", "user namespaces", "allow list", "uid 1000", "no_new_privs", "seccomp allow-list", "cgroup per stage", "rlimits"}
	for vmm, want := range map[string][]string{
		"qemu/tcg":             {"under TCG the boundary between a stage and this host is QEMU's software emulator", "does not treat as a security boundary", "KVM or other\nhardware-accelerated guests with virtio devices", "-sandbox on", qemuUser},
		"qemu/kvm":             {"hardware virtualization (KVM)", "-sandbox on", qemuUser},
		"cloud-hypervisor/kvm": {"hardware virtualization (KVM), through Cloud Hypervisor", "--seccomp true"},
	} {
		text := isolationText(vmm)
		for _, w := range append(want, layers...) {
			if !strings.Contains(text, w) {
				t.Errorf("%s: isolation text lacks %q:\n%s", vmm, w, text)
			}
		}
		if vmm != "qemu/tcg" && strings.Contains(text, "not treat as a security boundary") {
			t.Errorf("%s: the TCG caveat does not apply:\n%s", vmm, text)
		}
		if vmm == "cloud-hypervisor/kvm" && strings.Contains(text, "QEMU") {
			t.Errorf("%s: names QEMU:\n%s", vmm, text)
		}
	}
}
