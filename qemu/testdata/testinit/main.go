// Command testinit is the /init of the qemu package's boot tests: it does
// what the real agent does to reach the host (mount, load modules in
// modules.dep order, find the voidbox.agent virtio-serial port) and then
// answers each line "X" with "hello X". The kernel cmdline parameter
// voidbox.test=panic makes it crash the kernel instead, voidbox.test=hang
// makes it idle, voidbox.test=share copies /mnt/in.txt of the virtio-fs
// share "share" to /mnt/out.txt and powers off, voidbox.test=flood writes 1 MiB
// (and terminal escape sequences) to the console and powers off,
// voidbox.test=disks reports what it sees of /dev/vda and /dev/vdb on the
// console, writes to both and powers off.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	for _, m := range []struct{ src, dst, fs string }{{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}} {
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			fail("mount %s: %v", m.dst, err)
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	mode := ""
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "voidbox.test="); ok {
			mode = v
		}
	}
	loadModules()
	fmt.Println("testinit: modules loaded, mode", mode)
	switch mode {
	case "panic":
		_ = os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0)
		// A kernel without CONFIG_MAGIC_SYSRQ (the voidbox kernel): PID 1
		// exiting panics it too ("Attempted to kill init!").
		fmt.Println("testinit: no sysrq crash; exiting PID 1")
		os.Exit(1)
	case "hang":
		for {
			// Not select{}: with nothing left to wake it, the Go runtime would
			// end PID 1 ("all goroutines are asleep"), panicking the kernel.
			time.Sleep(time.Hour)
		}
	case "share":
		shareRoundTrip()
	case "flood":
		flood()
	case "disks":
		disks()
	}
	port := findPort("voidbox.agent")
	f, err := os.OpenFile(port, os.O_RDWR, 0)
	if err != nil {
		fail("open %s: %v", port, err)
	}
	rd := bufio.NewReader(f)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			// EOF until the host side connects.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		line = strings.TrimSpace(line)
		if line == "poweroff" {
			_, _ = f.WriteString("bye\n")
			unix.Sync()
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
		_, _ = f.WriteString("hello " + line + "\n")
	}
}

func loadModules() {
	names, _ := os.ReadFile("/etc/voidbox/modules")
	if len(strings.Fields(string(names))) == 0 {
		return // a kernel with every driver built in
	}
	release := uname()
	root := "/lib/modules/" + release + "/"
	dep := map[string][]string{}
	byName := map[string]string{}
	raw, err := os.ReadFile(root + "modules.dep")
	if err != nil {
		fail("read modules.dep: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		mod, deps, _ := strings.Cut(line, ":")
		dep[mod] = strings.Fields(deps)
		byName[strings.TrimSuffix(filepath.Base(mod), ".ko")] = mod
	}
	for _, name := range strings.Fields(string(names)) {
		mod := byName[name]
		list := append([]string{mod}, dep[mod]...)
		for i := len(list) - 1; i >= 0; i-- {
			insmod(root + list[i])
		}
	}
}

func insmod(path string) {
	f, err := os.Open(path)
	if err != nil {
		fail("open module: %v", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		fail("load %s: %v", path, err)
	}
}

func uname() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

func findPort(name string) string {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		files, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range files {
			if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) == name {
				return "/dev/" + filepath.Base(filepath.Dir(p))
			}
		}
	}
	fail("virtio port %s did not appear", name)
	return ""
}

func fail(format string, args ...any) {
	fmt.Printf("testinit: "+format+"\n", args...)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func shareRoundTrip() {
	_ = os.Mkdir("/mnt", 0o755)
	if err := unix.Mount("share", "/mnt", "virtiofs", 0, ""); err != nil {
		fail("mount virtiofs: %v", err)
	}
	in, err := os.ReadFile("/mnt/in.txt")
	if err != nil {
		fail("read share: %v", err)
	}
	if err := os.WriteFile("/mnt/out.txt", append([]byte("guest saw: "), in...), 0o644); err != nil {
		fail("write share: %v", err)
	}
	_ = unix.Unmount("/mnt", 0)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// flood floods the serial console, then says goodbye behind escape sequences
// that would retitle and clear the host's terminal, and powers off.
func flood() {
	f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		fail("open console: %v", err)
	}
	line := []byte(strings.Repeat("flood", 20) + "\n") // 101 bytes
	for range (1 << 20) / len(line) {
		if _, err := f.Write(line); err != nil {
			fail("write console: %v", err)
		}
	}
	_, _ = f.WriteString("\x1b]0;owned\x07\x1b[2Jtestinit: flood done\n")
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// disks prints, for vda and vdb, the size in sectors and read-only flag the
// kernel reports, the disk's first 16 bytes, and what writing "written by
// guest" at its start did; then powers off.
func disks() {
	for _, name := range []string{"vda", "vdb"} {
		size, err := os.ReadFile("/sys/block/" + name + "/size")
		if err != nil {
			fmt.Printf("testinit: disk %s: %v\n", name, err)
			continue
		}
		ro, _ := os.ReadFile("/sys/block/" + name + "/ro")
		serial, _ := os.ReadFile("/sys/block/" + name + "/serial")
		head := make([]byte, 16)
		if f, err := os.Open("/dev/" + name); err == nil {
			_, _ = f.ReadAt(head, 0)
			f.Close()
		}
		wrote := "ok"
		if f, err := os.OpenFile("/dev/"+name, os.O_WRONLY, 0); err != nil {
			wrote = err.Error()
		} else {
			if _, err := f.WriteAt([]byte("written by guest"), 0); err != nil {
				wrote = err.Error()
			} else if err := f.Sync(); err != nil {
				wrote = err.Error()
			}
			f.Close()
		}
		fmt.Printf("testinit: disk %s serial=%s size=%s ro=%s head=%q write=%s\n", name,
			strings.TrimSpace(string(serial)), strings.TrimSpace(string(size)), strings.TrimSpace(string(ro)), head, wrote)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
