package qemu

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Under TCG the guest's TSC is the host's TSC, but the guest kernel can only
// measure its frequency against the emulated PIT, and on a loaded host that
// measurement fails ("tsc: Unable to calibrate against PIT"); the 6.1 cloud
// kernel then hangs before "Calibrating delay loop". Measured here: four
// concurrent boots on a busy 2-core machine all hung for 40 s without the
// hint, and all powered off in ~7 s with tsc_early_khz set. So under TCG the
// driver tells the guest the host's TSC frequency.

var (
	tscOnce sync.Once
	tscKHz  int
)

// hostTSCkHz returns the host TSC frequency in kHz, or 0 when unknown (the
// guest then calibrates by itself). It prefers the kernel's tsc_freq_khz
// (where exposed) and falls back to /proc/cpuinfo's "cpu MHz" on hosts whose
// TSC is constant, where that figure is the TSC rate.
func hostTSCkHz() int {
	tscOnce.Do(func() {
		if raw, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
			if v, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && v > 0 {
				tscKHz = v
				return
			}
		}
		f, err := os.Open("/proc/cpuinfo")
		if err != nil {
			return
		}
		defer f.Close()
		tscKHz = parseCPUInfoTSC(bufio.NewScanner(f))
	})
	return tscKHz
}

func parseCPUInfoTSC(sc *bufio.Scanner) int {
	var mhz float64
	constant := false
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(value, 64)
			}
		case "flags":
			constant = constant || strings.Contains(" "+value+" ", " constant_tsc ")
		}
		if key == "" && mhz != 0 {
			break // end of the first processor block
		}
	}
	if !constant || mhz < 100 || mhz > 100000 {
		return 0
	}
	return int(mhz * 1000)
}
