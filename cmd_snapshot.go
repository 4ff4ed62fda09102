package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/voidbox/voidbox/internal/digest"
	"github.com/voidbox/voidbox/sandbox/vm"
	"github.com/voidbox/voidbox/snapshot"
)

const snapshotUsage = `Usage: voidbox snapshot build [--memory MB] [--vcpus N] [VM flags]
       voidbox snapshot ls
       voidbox snapshot rm ID...|--all
       voidbox snapshot prune [VM flags]

Manage the warm-start snapshots (~/.voidbox/snapshots): guests booted to the agent's
idle point, one per guest image, memory size, vCPU count and VMM. With --warm=auto (the
default) a stage whose VM has no disks, mounts, network or forwards starts from the
snapshot of its size, which the first such stage builds when it is missing.
build: make (or keep) the snapshot for a VM of this size now.
ls: the snapshots, their sizes and what they are for.
rm: delete snapshots by ID, or all of them.
prune: delete the snapshots of other guest images than the one a run would use now
(left behind by 'voidbox guest build'), and unreadable ones.`

// snapshotDir is where the store lives; tests point it elsewhere.
var snapshotDir = snapshot.DefaultDir

func init() {
	commands["snapshot"] = command{"build, list and remove the warm-start snapshots of booted guests", runSnapshot}
}

func runSnapshot(args []string, env *cliEnv) int {
	sub := map[string]func([]string, *cliEnv) int{"build": runSnapshotBuild, "ls": runSnapshotList, "rm": runSnapshotRemove, "prune": runSnapshotPrune}
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprintln(env.stdout, snapshotUsage)
		return exitOK
	}
	if len(args) == 0 || sub[args[0]] == nil {
		got := "none"
		if len(args) > 0 {
			got = fmt.Sprintf("%q", args[0])
		}
		fmt.Fprintf(env.stderr, "voidbox snapshot: want a subcommand: build, ls, rm or prune (got %s)\nRun 'voidbox snapshot --help' for usage.\n", got)
		return exitUsage
	}
	return sub[args[0]](args[1:], env)
}

func openSnapshotStore() (*snapshot.Store, error) {
	dir, err := snapshotDir()
	if err != nil {
		return nil, err
	}
	return snapshot.Open(dir)
}

// warmOptions is --warm for the vm sandbox: nil when off.
func warmOptions(vs vmSettings, warn io.Writer) (*vm.WarmOptions, error) {
	if vs.warm == "off" {
		return nil, nil
	}
	store, err := openSnapshotStore()
	if err != nil {
		return nil, err
	}
	return &vm.WarmOptions{Store: store, Notice: warn}, nil
}

func runSnapshotBuild(args []string, env *cliEnv) int {
	fs := newFlagSet("snapshot build", "", "Build the warm-start snapshot for a VM of this size.", env)
	memory := fs.Int("memory", 512, "guest memory in MiB (a box's memory_mb)")
	vcpus := fs.Int("vcpus", 1, "guest vCPUs (a box's vcpus)")
	vs := addVMFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	vs.warm = "auto"
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	snap, err := buildSnapshot(ctx, *vs, *memory, *vcpus, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot build: %v\n", err)
		return exitCodeFor(err)
	}
	fmt.Fprintf(env.stdout, "%s %s (%d MiB, %d vCPU, %s)\n", snap.Meta.ID, snap.Dir, snap.Meta.Key.MemoryMB, snap.Meta.Key.VCPUs, snap.Meta.Key.VMM)
	return exitOK
}

// buildSnapshot builds (or finds) the snapshot for a VM of this size with the VM flags'
// guest image and VMM.
func buildSnapshot(ctx context.Context, vs vmSettings, memory, vcpus int, warn io.Writer) (*snapshot.Snapshot, error) {
	if memory < 64 || memory > 65536 || vcpus < 1 || vcpus > 64 {
		return nil, usageErrorf("--memory must be 64 to 65536 and --vcpus 1 to 64, got %d and %d", memory, vcpus)
	}
	p, err := openVM(ctx, vs, nil, false, warn)
	if err != nil {
		return nil, err
	}
	return p.BuildSnapshotFor(ctx, memory, vcpus)
}

func runSnapshotList(args []string, env *cliEnv) int {
	fs := newFlagSet("snapshot ls", "", "List the warm-start snapshots.", env)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	store, err := openSnapshotStore()
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot ls: %v\n", err)
		return exitFailed
	}
	list, err := store.List()
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot ls: %v\n", err)
		return exitFailed
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMEMORY\tVCPUS\tVMM\tSIZE\tDISK\tCREATED")
	for _, e := range list {
		if e.Err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\tunreadable: %v\t-\t%s\t-\n", e.ID, e.Err, humanSize(e.Disk))
			continue
		}
		k := e.Meta.Key
		fmt.Fprintf(tw, "%s\t%d MiB\t%d\t%s\t%s\t%s\t%s\n", e.ID, k.MemoryMB, k.VCPUs, k.VMM, humanSize(e.Meta.Size()), humanSize(e.Disk), e.Meta.Created.Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	return exitOK
}

func runSnapshotPrune(args []string, env *cliEnv) int {
	fs := newFlagSet("snapshot prune", "", "Delete the snapshots of other guest images than the current one.", env)
	vs := addVMFlags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	ctx, _, stop := runContext(0, cancelSignals...)
	defer stop()
	img, _, err := resolveGuest(ctx, vs.guestSource, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot prune: which guest image is current: %v\n", err)
		return exitCodeFor(err)
	}
	kernel, err := digest.File(img.Kernel)
	if err == nil {
		var initramfs string
		if initramfs, err = digest.File(img.Initramfs); err == nil {
			err = pruneSnapshots(ctx, kernel, initramfs, env)
		}
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot prune: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// pruneSnapshots removes every snapshot not of the guest image with these digests.
func pruneSnapshots(ctx context.Context, kernel, initramfs string, env *cliEnv) error {
	store, err := openSnapshotStore()
	if err != nil {
		return err
	}
	list, err := store.List()
	if err != nil {
		return err
	}
	for _, e := range list {
		why := ""
		switch {
		case e.Err != nil:
			why = "unreadable"
		case e.Meta.Key.KernelSHA256 != kernel || e.Meta.Key.InitramfsSHA256 != initramfs:
			why = "another guest image"
		default:
			continue
		}
		if err := store.Remove(ctx, e.ID); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "removed %s (%s, %s)\n", e.ID, why, humanSize(e.Disk))
	}
	return nil
}

func runSnapshotRemove(args []string, env *cliEnv) int {
	fs := newFlagSet("snapshot rm", "ID...|--all", "Delete warm-start snapshots.", env)
	all := fs.Bool("all", false, "delete every snapshot")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	ids := fs.Args()
	if *all == (len(ids) > 0) {
		fmt.Fprintln(env.stderr, "voidbox snapshot rm: give snapshot IDs (see voidbox snapshot ls) or --all, not both")
		return exitUsage
	}
	store, err := openSnapshotStore()
	if err != nil {
		fmt.Fprintf(env.stderr, "voidbox snapshot rm: %v\n", err)
		return exitFailed
	}
	if *all {
		list, err := store.List()
		if err != nil {
			fmt.Fprintf(env.stderr, "voidbox snapshot rm: %v\n", err)
			return exitFailed
		}
		for _, e := range list {
			ids = append(ids, e.ID)
		}
	}
	code := exitOK
	for _, id := range ids {
		if err := store.Remove(context.Background(), id); err != nil {
			fmt.Fprintf(env.stderr, "voidbox snapshot rm: %v\n", err)
			code = exitFailed
			if snapshot.CheckID(id) != nil {
				code = exitUsage
			}
			continue
		}
		fmt.Fprintf(env.stdout, "removed %s\n", id)
	}
	return code
}
