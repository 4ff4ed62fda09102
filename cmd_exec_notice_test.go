package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/qemu"
)

// fakeAccel stands in for *qemu.VMM: Accel answers accel and, like the driver falling
// back to TCG, writes its detailed notice to the buffer it was given; ProbeKVM answers
// probe (or probeErr).
type fakeAccel struct {
	accel    string
	notice   string
	out      io.Writer
	err      error
	calls    int
	probe    qemu.ProbeResult
	probeErr error
	probes   int
}

func (f *fakeAccel) Accel(context.Context, string, string) (string, error) {
	f.calls++
	if f.notice != "" {
		io.WriteString(f.out, f.notice)
	}
	return f.accel, f.err
}

func (f *fakeAccel) ProbeKVM(context.Context, string, string) (qemu.ProbeResult, error) {
	f.probes++
	return f.probe, f.probeErr
}

const qemuNotice = "voidbox: KVM is not usable here (KVM probe boot failed: kvm boot did not power off in time | console tail: | Probing EDD); running microVMs under QEMU TCG software emulation (slower)\n"

func TestSettleAccelNotice(t *testing.T) {
	img := guestimage.Image{Kernel: "vmlinuz", Initramfs: "initrd"}
	cases := []struct {
		name, accel, notice string
		verbose             bool
		want                string // "" for nothing printed
	}{
		{"kvm works", "kvm", "", false, ""},
		{"tcg asked for", "tcg", "", false, ""},
		{"fallback", "tcg", qemuNotice, false, "voidbox: KVM does not work here ("},
		{"fallback, verbose", "tcg", qemuNotice, true, qemuNotice},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var notice, warn bytes.Buffer
			f := &fakeAccel{accel: c.accel, notice: c.notice, out: &notice}
			if err := settleAccel(context.Background(), f, img, &notice, c.verbose, &warn, ""); err != nil {
				t.Fatal(err)
			}
			if f.calls != 1 || f.probes != 0 {
				t.Errorf("Accel called %d times, ProbeKVM %d; want Accel once (before any stage) and no extra probe", f.calls, f.probes)
			}
			got := warn.String()
			switch {
			case c.want == "" && got != "":
				t.Errorf("printed %q, want nothing", got)
			case c.want != "" && !strings.HasPrefix(got, c.want):
				t.Errorf("printed %q, want it to start %q", got, c.want)
			}
			if c.notice != "" && !c.verbose {
				if strings.Count(got, "\n") != 1 || strings.Contains(got, "console") || !strings.HasSuffix(got, "using QEMU with TCG software emulation (slower, and not a security boundary by QEMU's own policy). Run 'voidbox doctor' for details.\n") {
					t.Errorf("want one short sentence without QEMU's text, got %q", got)
				}
			}
		})
	}
	f := &fakeAccel{err: errors.New("kvm probe: context canceled")}
	if err := settleAccel(context.Background(), f, img, &bytes.Buffer{}, false, io.Discard, ""); err == nil || !strings.Contains(err.Error(), "kvm probe: context canceled") {
		t.Fatalf("a probe that could not run: err %v", err)
	}
}

// KVM asked for by name (--accel kvm, $VOIDBOX_ACCEL=kvm) never falls back to TCG: a
// failed probe boot is an error before any stage, naming where kvm was asked for;
// QEMU's own text is for --verbose. A probe that succeeds runs as before, silently.
func TestSettleAccelKVMRefusesFallback(t *testing.T) {
	img := guestimage.Image{Kernel: "vmlinuz", Initramfs: "initrd"}
	broken := qemu.ProbeResult{Detail: "KVM probe boot failed: kvm boot did not power off in time"}
	for _, from := range []string{"--accel", "$VOIDBOX_ACCEL"} {
		for _, verbose := range []bool{false, true} {
			var warn bytes.Buffer
			// The driver, left to itself, would settle on tcg: the refusal must come first.
			f := &fakeAccel{accel: "tcg", notice: qemuNotice, out: &bytes.Buffer{}, probe: broken}
			err := settleAccel(context.Background(), f, img, &bytes.Buffer{}, verbose, &warn, from)
			if err == nil {
				t.Fatalf("%s kvm with KVM broken: no error", from)
			}
			msg := err.Error()
			for _, want := range []string{from + " kvm, but KVM does not work here (", "does not fall back to TCG", "--accel auto or tcg", "not treat as a security boundary"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s, verbose %v: error %q lacks %q", from, verbose, msg, want)
				}
			}
			if strings.Contains(msg, "did not power off") != verbose {
				t.Errorf("verbose %v: error %q; QEMU's text belongs to --verbose only", verbose, msg)
			}
			if f.calls != 0 || warn.Len() != 0 {
				t.Errorf("%s kvm: Accel called %d times, printed %q; want neither (no TCG notice, no TCG run)", from, f.calls, warn.String())
			}
		}
	}
	f := &fakeAccel{accel: "kvm", probe: qemu.ProbeResult{OK: true}}
	var warn bytes.Buffer
	if err := settleAccel(context.Background(), f, img, &bytes.Buffer{}, false, &warn, "--accel"); err != nil || f.probes != 1 || f.calls != 1 || warn.Len() != 0 {
		t.Errorf("--accel kvm with KVM working: err %v, %d probes, %d Accel calls, printed %q", err, f.probes, f.calls, warn.String())
	}
	f = &fakeAccel{accel: "kvm", probeErr: errors.New("kvm probe: hash kernel: no such file")}
	if err := settleAccel(context.Background(), f, img, &bytes.Buffer{}, false, io.Discard, "--accel"); err == nil || !strings.Contains(err.Error(), "--accel kvm: kvm probe: hash kernel") {
		t.Errorf("a probe that could not run: err %v", err)
	}
}

// Through the CLI, with a QEMU stand-in on PATH whose every boot fails: --accel kvm
// and $VOIDBOX_ACCEL=kvm stop the run before any stage with exit code 1, and nothing
// runs under TCG. (Where /dev/kvm is missing the probe is not even tried; the refusal
// is the same.)
func TestExecAccelKVMRefusesFallback(t *testing.T) {
	bin := t.TempDir()
	writeFile(t, bin, "qemu-system-x86_64", "#!/bin/sh\nif [ \"$1\" = -version ]; then echo 'QEMU emulator version 0.0.0 (stand-in)'; exit 0; fi\necho 'stand-in: every boot fails' >&2\nexit 1\n")
	if err := os.Chmod(filepath.Join(bin, "qemu-system-x86_64"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)           // no cloud-hypervisor either: --vmm auto goes to QEMU
	t.Setenv("HOME", t.TempDir())   // the probe result is cached under $HOME/.voidbox
	t.Setenv("TMPDIR", t.TempDir()) // state dirs
	dir := t.TempDir()
	kernel, initramfs := writeFile(t, dir, "vmlinuz", "kernel"), writeFile(t, dir, "initramfs", "initramfs")
	prog := writeFile(t, dir, "p.star", `pipeline = box(name = "a", cmd = ["true"])`+"\n")
	for _, c := range []struct {
		from string
		args []string
		env  string
	}{
		{"--accel", []string{"--accel", "kvm"}, ""},
		{"$VOIDBOX_ACCEL", nil, "kvm"},
	} {
		t.Setenv("VOIDBOX_ACCEL", c.env)
		args := append([]string{"exec", "--sandbox", "vm", "--kernel", kernel, "--initramfs", initramfs}, c.args...)
		r := voidbox(t, append(args, prog)...)
		want := "voidbox exec: no microVM sandbox: " + c.from + " kvm, but KVM does not work here ("
		if r.code != exitFailed || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "using QEMU with TCG") {
			t.Errorf("%s kvm: exit %d, stderr %q; want exit %d and one line starting %q", c.from, r.code, r.stderr, exitFailed, want)
		}
	}
}
