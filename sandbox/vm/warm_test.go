package vm

import (
	"context"
	"strings"
	"testing"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"github.com/voidbox/voidbox/runtime"
)

// bootOnly is a VMM without snapshots.
type bootOnly struct{ runtime.VMM }

func TestColdReasons(t *testing.T) {
	snapVMM := &fakeSnapshotter{}
	p := &Provider{opts: Options{VMM: snapVMM}}
	for _, tc := range []struct {
		boot  proto.BootConfig
		vmcfg runtime.VMConfig
		kargs []string
		want  string
	}{
		{want: ""},
		{boot: proto.BootConfig{Root: "root"}, vmcfg: runtime.VMConfig{Disks: []runtime.Disk{{ID: "root"}}}, want: "image disks must be attached at boot"},
		{vmcfg: runtime.VMConfig{Shares: []runtime.Share{{Tag: "m0"}}}, want: "mounts need devices at boot"},
		{vmcfg: runtime.VMConfig{NetworkSocket: "/n.sock"}, want: "network = True needs its NIC at boot"},
		{boot: proto.BootConfig{Forwards: []proto.Forward{{Name: "llm", Port: 1}}}, want: "agent stages need their forwards at boot"},
		{boot: proto.BootConfig{UID: 1001, GID: 1001}, want: "the stage runs as 1001:1001"},
		{kargs: []string{"debug"}, want: "extra kernel arguments are set"},
	} {
		p.opts.KernelArgs = tc.kargs
		got := p.coldReason(tc.boot, tc.vmcfg)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("coldReason(%+v, %+v) = %q, want %q", tc.boot, tc.vmcfg, got, tc.want)
		}
	}
	p.opts.KernelArgs = nil
	p.opts.VMM = bootOnly{snapVMM}
	if got := p.coldReason(proto.BootConfig{}, runtime.VMConfig{}); got != "the VMM cannot restore snapshots" {
		t.Errorf("coldReason without a Snapshotter = %q", got)
	}
}

func TestWarmOffIsColdWithoutDetail(t *testing.T) {
	p := &Provider{opts: Options{VMM: &fakeSnapshotter{}}}
	sb, detail, err := p.warmStart(context.Background(), proto.BootConfig{}, runtime.VMConfig{}, nil)
	if sb != nil || detail != "" || err != nil {
		t.Fatalf("warmStart with Warm nil = %v, %q, %v; want a plain cold boot", sb, detail, err)
	}
}

// fakeSnapshotter satisfies runtime.Snapshotter for the decisions above; nothing
// boots.
type fakeSnapshotter struct{ runtime.VMM }

func (*fakeSnapshotter) Name() string { return "fake" }
func (*fakeSnapshotter) SnapshotID(context.Context, string, string) (string, error) {
	return "fake", nil
}
func (*fakeSnapshotter) SnapshotBoot(context.Context, runtime.VMConfig, string) (runtime.Machine, error) {
	return nil, nil
}
func (*fakeSnapshotter) SaveSnapshot(context.Context, runtime.Machine, string) error { return nil }
func (*fakeSnapshotter) Restore(context.Context, runtime.VMConfig, string) (runtime.Machine, error) {
	return nil, nil
}
