package proto

import "fmt"

// Limits bound what the stage processes of one VM may use together. The host derives
// them from the box (LimitsForBox) and sends them in the BootConfig, so they are in
// force before the first exec; the agent applies them at boot. A zero field leaves
// that resource to the kernel's default.
type Limits struct {
	// MemoryMB is memory.max of the stage cgroup (swap is off): every stage process,
	// its kernel objects and what it writes to /tmp and /workspace count against it.
	MemoryMB int `json:"mem,omitempty"`
	// Pids is pids.max of the stage cgroup: processes and threads together.
	Pids int `json:"pids,omitempty"`
	// TmpMB and WorkspaceMB size the tmpfs mounted on /tmp and /workspace.
	TmpMB       int `json:"tmp,omitempty"`
	WorkspaceMB int `json:"ws,omitempty"`
}

// Limit policy of LimitsForBox, from the voidbox guest kernel booted with 64 MiB: the
// kernel keeps 13 MiB for itself (MemTotal is 51 MiB); at rest its slabs, the
// initramfs (busybox and the agent) and the agent (3.4 MiB resident) use another 20
// MiB, so 30 MiB are free. The agent grew to 8 MiB resident serving a 64 MiB stdout
// stream and a fork bomb. The reserve keeps twice that growth free when the stage is
// at its limit, so the kernel's OOM killer only ever acts inside the stage cgroup: a
// global OOM could find nothing but PID 1 and panic the guest.
const (
	// MinReserveMB is the least memory kept out of the stage's reach.
	MinReserveMB = 44
	// ReservePercent of the box is kept out of the stage's reach when larger.
	ReservePercent = 25
	// MaxPids caps pids.max and RLIMIT_NPROC.
	MaxPids = 512
	// PidsPerMB scales the process limit below 256 MiB: the kernel's own thread
	// limit for everyone, the agent included, scales with memory (threads-max is
	// 333 with 64 MiB, 845 with 128 MiB), and the agent must still start threads
	// when the stage is at its limit.
	PidsPerMB = 2
	// MaxOpenFiles is RLIMIT_NOFILE, soft and hard.
	MaxOpenFiles = 4096
)

// LimitsForBox returns the stage limits and per-process rlimits of a box with
// memoryMB of RAM (at least 64, the smallest box):
//   - memory.max: the box less max(MinReserveMB, ReservePercent%) (64 MiB: 20, 512: 384);
//   - /workspace: half of that, /tmp: a quarter, so a stage that filled both still has
//     a quarter of its memory to run in, and a full tmpfs says ENOSPC before the
//     memory limit is reached;
//   - pids.max and RLIMIT_NPROC: MaxPids, or PidsPerMB per MiB of a smaller box;
//   - RLIMIT_NOFILE: MaxOpenFiles;
//   - RLIMIT_FSIZE: the larger tmpfs plus 1 MiB. No file can outgrow its filesystem,
//     and one exactly as large as the limit would end in SIGXFSZ instead of ENOSPC.
//
// RLIMIT_CORE is 0 for every process in the guest (the agent sets it on itself at
// boot, soft and hard, and every process inherits it).
func LimitsForBox(memoryMB int) (Limits, Rlimits) {
	reserve := max(MinReserveMB, memoryMB*ReservePercent/100)
	mem := max(memoryMB-reserve, 1)
	l := Limits{
		MemoryMB:    mem,
		Pids:        min(MaxPids, memoryMB*PidsPerMB),
		TmpMB:       max(mem/4, 1),
		WorkspaceMB: max(mem/2, 1),
	}
	r := Rlimits{
		NOFILE: MaxOpenFiles,
		NPROC:  uint64(l.Pids),
		FSIZE:  uint64(max(l.TmpMB, l.WorkspaceMB)+1) << 20,
	}
	return l, r
}

// maxLimitMB bounds every size in Limits (1 TiB): larger values are a mistake.
const maxLimitMB = 1 << 20

func (l Limits) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"memory", l.MemoryMB}, {"tmp", l.TmpMB}, {"workspace", l.WorkspaceMB}} {
		if f.v < 0 || f.v > maxLimitMB {
			return fmt.Errorf("boot config %s limit %d MiB out of range 0..%d", f.name, f.v, maxLimitMB)
		}
	}
	if l.Pids < 0 || l.Pids > 1<<22 {
		return fmt.Errorf("boot config pids limit %d out of range 0..%d", l.Pids, 1<<22)
	}
	return nil
}
