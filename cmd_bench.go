package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/voidbox/voidbox/guestimage"
	"github.com/voidbox/voidbox/qemu"
	"github.com/voidbox/voidbox/runtime"
	"github.com/voidbox/voidbox/sandbox/vm"
)

func runBench(args []string, env *cliEnv) int {
	if len(args) == 0 || args[0] != "boot" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(env.stdout, "Usage: voidbox bench boot [--runs N] [--execs N] [--accel A]\n\nMeasures cold box-to-first-exec and exec round trip, side by side with the floor:\nbare QEMU booting the same kernel to a trivial init, in the same run.")
			return exitOK
		}
		fmt.Fprintln(env.stderr, "voidbox bench: want a benchmark name: boot\nRun 'voidbox bench --help' for usage.")
		return exitUsage
	}
	fs := newFlagSet("bench boot", "", "Cold box-to-first-exec p50/p95 and exec round trip p50, against bare QEMU booting the same kernel.", env)
	runs := fs.Int("runs", 5, "cold boots of each kind")
	execs := fs.Int("execs", 30, "exec round trips on one booted box")
	compare := fs.String("compare-kernel", "", "second kernel whose bare boot is measured beside the image's (default: Debian's cloud kernel, downloaded once into the guest cache; \"none\" skips it)")
	vs := addVMFlags(fs)
	if code, done := parseFlags(fs, args[1:]); done {
		return code
	}
	if *runs < 1 || *execs < 1 {
		fmt.Fprintln(env.stderr, "voidbox bench boot: --runs and --execs must be >= 1")
		return exitUsage
	}
	// Like exec: every way out goes through the context, so the kernel compile
	// (guest build) or the VMs (bench) are stopped and cleaned up.
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	if err := benchBoot(ctx, env.stdout, env.stderr, *vs, *runs, *execs, *compare); err != nil {
		fmt.Fprintf(env.stderr, "voidbox bench boot: %v\n", err)
		return exitCodeFor(err) // a --guest-image that does not parse is bad usage
	}
	return exitOK
}

func benchBoot(ctx context.Context, out, warn io.Writer, vs vmSettings, runs, execs int, compare string) error {
	img, _, err := resolveGuest(ctx, vs.guestSource, warn)
	if err != nil {
		return err
	}
	if compare == "" {
		cache, err := guestimage.DefaultCacheDir()
		if err != nil {
			return err
		}
		if compare, err = guestimage.DebianKernel(ctx, cache, warn); err != nil {
			return fmt.Errorf("comparison kernel: %w (pass --compare-kernel PATH or none)", err)
		}
	}
	if compare == "none" {
		compare = ""
	}
	qv, err := qemu.New(qemu.Options{Accel: vs.accel, Notice: warn})
	if err != nil {
		return err
	}
	accel, err := qv.Accel(ctx, img.Kernel, img.Initramfs)
	if err != nil {
		return err
	}
	provider, err := vm.New(vm.Options{VMM: qv, Kernel: img.Kernel, Initramfs: img.Initramfs})
	if err != nil {
		return err
	}
	spec := runtime.SandboxSpec{Name: "bench", MemoryMB: qemu.FloorMemoryMB, VCPUs: 1} // the floor's size: like for like
	warmed, err := warmBenchProvider(ctx, vs, qv, img, warn)
	if err != nil {
		return err
	}
	var floor, floor2, box, warm []time.Duration
	// Interleave the kinds so drift in machine load hits all alike.
	for i := 0; i < runs; i++ {
		d, err := qemu.BootFloor(ctx, qemu.Options{}, img.Kernel, img.Initramfs, accel)
		if err != nil {
			return fmt.Errorf("floor boot %d: %w", i+1, err)
		}
		floor = append(floor, d)
		if compare != "" {
			d, err := qemu.BootFloor(ctx, qemu.Options{}, compare, img.Initramfs, accel)
			if err != nil {
				return fmt.Errorf("floor boot %d of %s: %w", i+1, compare, err)
			}
			floor2 = append(floor2, d)
		}
		start := time.Now()
		sb, err := provider.Open(ctx, spec)
		if err != nil {
			return fmt.Errorf("box boot %d: %w", i+1, err)
		}
		_, err = sb.Exec(ctx, runtime.ExecRequest{Args: []string{"true"}})
		box = append(box, time.Since(start))
		sb.Close()
		if err != nil {
			return fmt.Errorf("first exec %d: %w", i+1, err)
		}
		line := fmt.Sprintf("run %d/%d: floor %s, box %s", i+1, runs, floor[i].Round(time.Millisecond), box[i].Round(time.Millisecond))
		if warmed != nil {
			d, err := firstExec(ctx, warmed, spec)
			if err != nil {
				return fmt.Errorf("warm start %d: %w", i+1, err)
			}
			warm = append(warm, d)
			line += fmt.Sprintf(", warm %s", d.Round(time.Millisecond))
		}
		if compare != "" {
			line += fmt.Sprintf(", comparison floor %s", floor2[i].Round(time.Millisecond))
		}
		fmt.Fprintln(warn, line)
	}
	sb, err := provider.Open(ctx, spec)
	if err != nil {
		return err
	}
	defer sb.Close()
	var rtt []time.Duration
	for i := 0; i < execs; i++ {
		start := time.Now()
		if _, err := sb.Exec(ctx, runtime.ExecRequest{Args: []string{"true"}}); err != nil {
			return fmt.Errorf("exec %d: %w", i+1, err)
		}
		rtt = append(rtt, time.Since(start))
	}
	fmt.Fprintf(out, "voidbox bench boot: %s, kernel %s, %d cold boots each, %d execs\n", qv.Name(), img.Release, runs, execs)
	if img.KernelOrigin != "" {
		fmt.Fprintf(out, "kernel: %s\n", img.KernelOrigin)
	}
	if compare != "" {
		fmt.Fprintf(out, "comparison kernel: %s\n", compare)
	}
	const row = "%-44s %10s %10s\n"
	fmt.Fprintf(out, row, "", "p50", "p95")
	fmt.Fprintf(out, row, "floor: bare QEMU, kernel to init", pct(floor, 50), pct(floor, 95))
	if compare != "" {
		fmt.Fprintf(out, row, "floor: bare QEMU, comparison kernel to init", pct(floor2, 50), pct(floor2, 95))
	}
	fmt.Fprintf(out, row, "box: cold boot to first exec", pct(box, 50), pct(box, 95))
	if warmed != nil {
		fmt.Fprintf(out, row, "warm start to first exec", pct(warm, 50), pct(warm, 95))
	}
	fmt.Fprintf(out, row, "exec round trip (true)", pct(rtt, 50), pct(rtt, 95))
	fmt.Fprintf(out, "ratio box/floor (p50): %.2f (target <= 1.30)\n", float64(percentile(box, 50))/float64(percentile(floor, 50)))
	if warmed != nil {
		fmt.Fprintf(out, "ratio warm/cold (p50): %.2f (target <= 0.40)\n", float64(percentile(warm, 50))/float64(percentile(box, 50)))
	}
	if compare != "" {
		fmt.Fprintf(out, "comparison floor / box (p50): %.2fx\n", float64(percentile(floor2, 50))/float64(percentile(box, 50)))
	}
	return nil
}

// percentile uses the nearest-rank method.
func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := (p*len(s) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

func pct(ds []time.Duration, p int) string {
	d := percentile(ds, p)
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// warmBenchProvider is a provider that warm-starts the bench's box, its snapshot built
// before any run is timed; nil with --warm=off.
func warmBenchProvider(ctx context.Context, vs vmSettings, qv *qemu.VMM, img guestimage.Image, warn io.Writer) (*vm.Provider, error) {
	w, err := warmOptions(vs, warn)
	if err != nil || w == nil {
		return nil, err
	}
	p, err := vm.New(vm.Options{VMM: qv, Kernel: img.Kernel, Initramfs: img.Initramfs, Warm: w})
	if err != nil {
		return nil, err
	}
	if _, err := p.BuildSnapshotFor(ctx, qemu.FloorMemoryMB, 1); err != nil {
		return nil, fmt.Errorf("warm start snapshot: %w", err)
	}
	return p, nil
}

// firstExec times a box's start to the end of its first exec.
func firstExec(ctx context.Context, p *vm.Provider, spec runtime.SandboxSpec) (time.Duration, error) {
	start := time.Now()
	sb, err := p.Open(ctx, spec)
	if err != nil {
		return 0, err
	}
	_, err = sb.Exec(ctx, runtime.ExecRequest{Args: []string{"true"}})
	d := time.Since(start)
	sb.Close()
	return d, err
}
