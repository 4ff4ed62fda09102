package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guestimage"
)

// fakeAccel stands in for *qemu.VMM: Accel answers accel and, like the driver falling
// back to TCG, writes its detailed notice to the buffer it was given.
type fakeAccel struct {
	accel  string
	notice string
	out    io.Writer
	err    error
	calls  int
}

func (f *fakeAccel) Accel(context.Context, string, string) (string, error) {
	f.calls++
	if f.notice != "" {
		io.WriteString(f.out, f.notice)
	}
	return f.accel, f.err
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
			if err := settleAccel(context.Background(), f, img, &notice, c.verbose, &warn); err != nil {
				t.Fatal(err)
			}
			if f.calls != 1 {
				t.Errorf("Accel called %d times, want once (before any stage)", f.calls)
			}
			got := warn.String()
			switch {
			case c.want == "" && got != "":
				t.Errorf("printed %q, want nothing", got)
			case c.want != "" && !strings.HasPrefix(got, c.want):
				t.Errorf("printed %q, want it to start %q", got, c.want)
			}
			if c.notice != "" && !c.verbose {
				if strings.Count(got, "\n") != 1 || strings.Contains(got, "console") || !strings.HasSuffix(got, "using QEMU with TCG software emulation (slower). Run 'voidbox doctor' for details.\n") {
					t.Errorf("want one short sentence without QEMU's text, got %q", got)
				}
			}
		})
	}
	f := &fakeAccel{err: errors.New("kvm probe: context canceled")}
	if err := settleAccel(context.Background(), f, img, &bytes.Buffer{}, false, io.Discard); err == nil || !strings.Contains(err.Error(), "kvm probe: context canceled") {
		t.Fatalf("a probe that could not run: err %v", err)
	}
}
