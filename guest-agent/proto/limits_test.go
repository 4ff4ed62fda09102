package proto

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestLimitsForBox(t *testing.T) {
	for _, c := range []struct {
		box  int
		want Limits
	}{
		// The smallest box: the 44 MiB reserve, a process per 512 KiB.
		{64, Limits{MemoryMB: 20, Pids: 128, TmpMB: 5, WorkspaceMB: 10}},
		{128, Limits{MemoryMB: 84, Pids: 256, TmpMB: 21, WorkspaceMB: 42}},
		// The default box: a quarter reserved.
		{512, Limits{MemoryMB: 384, Pids: 512, TmpMB: 96, WorkspaceMB: 192}},
		{65536, Limits{MemoryMB: 49152, Pids: 512, TmpMB: 12288, WorkspaceMB: 24576}},
	} {
		l, r := LimitsForBox(c.box)
		if l != c.want {
			t.Errorf("LimitsForBox(%d) = %+v, want %+v", c.box, l, c.want)
		}
		if reserve := c.box - l.MemoryMB; reserve < MinReserveMB || reserve < c.box*ReservePercent/100 {
			t.Errorf("box %d MiB: %d MiB reserved for the agent and kernel", c.box, reserve)
		}
		// A stage that filled both tmpfs still has memory to run in, so a full tmpfs
		// says ENOSPC rather than ending in the OOM killer.
		if l.TmpMB+l.WorkspaceMB >= l.MemoryMB {
			t.Errorf("box %d MiB: tmpfs %d+%d MiB reach the %d MiB memory limit", c.box, l.TmpMB, l.WorkspaceMB, l.MemoryMB)
		}
		// No file stops at RLIMIT_FSIZE (SIGXFSZ) before its tmpfs is full (ENOSPC).
		if r.FSIZE <= uint64(l.WorkspaceMB)<<20 || r.FSIZE <= uint64(l.TmpMB)<<20 {
			t.Errorf("box %d MiB: FSIZE %d does not exceed the tmpfs sizes", c.box, r.FSIZE)
		}
		if r.NOFILE != MaxOpenFiles || r.NPROC != uint64(l.Pids) || r.CPU != 0 {
			t.Errorf("box %d MiB: rlimits %+v", c.box, r)
		}
	}
}

func TestBootConfigCarriesLimits(t *testing.T) {
	secret, _ := NewSecret()
	l, r := LimitsForBox(512)
	arg, err := BootConfig{Secret: secret, Limits: l, Rlimits: r}.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKernelCmdline(arg)
	if err != nil {
		t.Fatal(err)
	}
	if got.Limits != l || got.Rlimits != r {
		t.Errorf("round trip: limits %+v rlimits %+v, want %+v %+v", got.Limits, got.Rlimits, l, r)
	}
	for _, bad := range []struct {
		limits Limits
		want   string
	}{
		{Limits{MemoryMB: -1}, "memory limit -1 MiB out of range"},
		{Limits{WorkspaceMB: maxLimitMB + 1}, "workspace limit 1048577 MiB out of range"},
		{Limits{Pids: -5}, "pids limit -5 out of range"},
	} {
		if _, err := (BootConfig{Secret: secret, Limits: bad.limits}).KernelArg(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("limits %+v: %v, want %q", bad.limits, err, bad.want)
		}
		js := `{"v":1,"s":"` + secret + `","l":{"mem":-1}}`
		if _, err := ParseKernelCmdline("voidbox.boot=" + base64.RawURLEncoding.EncodeToString([]byte(js))); err == nil {
			t.Errorf("guest accepted %s", js)
		}
	}
}
