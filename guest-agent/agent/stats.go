package agent

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// Resource sampling during an exec (proto/stats.go): CPU from /proc/stat deltas,
// memory from /proc/meminfo, network bytes from /proc/net/dev and the process count
// from /proc's pid directories. The files are the guest kernel's, but a stage can
// name a network interface, so every parser bounds what it reads and skips what it
// does not understand instead of failing the sample.

// maxProcFile bounds each /proc file read: /proc/stat of a 64-vCPU box is ~10 KiB,
// /proc/net/dev grows with interfaces a stage may create.
const maxProcFile = 64 << 10

// procReader reads one sample's files under root (/proc; a testdata directory in tests).
type procReader struct {
	root string
}

// readFile reads at most maxProcFile bytes of root/name.
func (p procReader) readFile(name string) ([]byte, error) {
	f, err := os.Open(p.root + "/" + name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxProcFile))
}

// reading is one pass over the /proc files; ok flags say which parts were read.
type reading struct {
	busy, total     uint64 // CPU jiffies of all CPUs
	cpuOK           bool
	memUsed, memTot uint64 // bytes
	memOK           bool
	rx, tx          uint64 // bytes, all interfaces but lo
	netOK           bool
	procs           uint32
}

func (p procReader) read() reading {
	var r reading
	if b, err := p.readFile("stat"); err == nil {
		r.busy, r.total, r.cpuOK = parseProcStat(b)
	}
	if b, err := p.readFile("meminfo"); err == nil {
		r.memUsed, r.memTot, r.memOK = parseMeminfo(b)
	}
	if b, err := p.readFile("net/dev"); err == nil {
		r.rx, r.tx, r.netOK = parseNetDev(b)
	}
	r.procs = countProcs(p.root)
	return r
}

// parseProcStat sums the aggregate "cpu" line of /proc/stat: busy is every jiffy but
// idle and iowait; guest and guest_nice are already counted in user and nice.
func parseProcStat(b []byte) (busy, total uint64, ok bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total, true
}

// parseMeminfo gives MemTotal - MemAvailable and MemTotal in bytes.
func parseMeminfo(b []byte) (used, total uint64, ok bool) {
	var avail uint64
	var haveTotal, haveAvail bool
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		var dst *uint64
		switch string(f[0]) {
		case "MemTotal:":
			dst, haveTotal = &total, true
		case "MemAvailable:":
			dst, haveAvail = &avail, true
		default:
			continue
		}
		v, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil || v > 1<<40 || (len(f) > 2 && string(f[2]) != "kB") {
			return 0, 0, false
		}
		*dst = v << 10
	}
	if !haveTotal || !haveAvail {
		return 0, 0, false
	}
	return total - min(avail, total), total, true
}

// parseNetDev sums received and transmitted bytes of every interface but lo. A line
// is "  name: rx_bytes packets ... (8 fields) tx_bytes ..."; the name may touch the
// first number ("eth0:123"), so the split is at the last colon of the line's start.
func parseNetDev(b []byte) (rx, tx uint64, ok bool) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		name, rest, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue // the two header lines
		}
		if string(bytes.TrimSpace(name)) == "lo" {
			ok = true
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 16 {
			continue
		}
		r, err1 := strconv.ParseUint(string(f[0]), 10, 64)
		t, err2 := strconv.ParseUint(string(f[8]), 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rx, tx, ok = rx+r, tx+t, true
	}
	return rx, tx, ok
}

// maxProcEntries bounds the /proc directory scan: pids.max of the stage is at most 512,
// the agent's and the kernel's own are a few dozen.
const maxProcEntries = 1 << 16

// countProcs counts the pid directories of root: the guest's processes, kernel
// threads included (threads of a process are not listed there).
func countProcs(root string) uint32 {
	d, err := os.Open(root)
	if err != nil {
		return 0
	}
	defer d.Close()
	var n uint32
	for seen := 0; seen < maxProcEntries; {
		names, err := d.Readdirnames(256)
		for _, name := range names {
			if _, perr := strconv.ParseUint(name, 10, 32); perr == nil {
				n++
			}
		}
		seen += len(names)
		if err != nil {
			break
		}
	}
	return n
}

// sampler turns successive readings into samples relative to the exec's start.
type sampler struct {
	proc  procReader
	start time.Time
	base  reading // at the exec's start: network bytes are counted from there
	prev  reading // the previous sample's, for the CPU delta
}

func newSampler(proc procReader, now time.Time) *sampler {
	r := proc.read()
	return &sampler{proc: proc, start: now, base: r, prev: r}
}

// sample reads the files again and returns the exec's sample at now.
func (s *sampler) sample(now time.Time) proto.Stats {
	r := s.proc.read()
	st := proto.Stats{Elapsed: now.Sub(s.start), Procs: r.procs}
	if r.cpuOK && s.prev.cpuOK && r.total > s.prev.total && r.busy >= s.prev.busy {
		st.CPU = float64(r.busy-s.prev.busy) / float64(r.total-s.prev.total)
		st.CPUValid = true
	}
	if r.memOK {
		st.MemUsed, st.MemTotal = r.memUsed, r.memTot
	}
	if r.netOK && s.base.netOK {
		// An interface that went away takes its counters with it: never negative.
		st.NetRx = r.rx - min(s.base.rx, r.rx)
		st.NetTx = r.tx - min(s.base.tx, r.tx)
	}
	if r.cpuOK {
		s.prev = r
	}
	return st
}

// statsLoop sends a sample every interval on an exec's stream until stop is called,
// which sends the last one. A nil *statsLoop (sampling off) does nothing.
type statsLoop struct {
	stopc chan struct{}
	done  chan struct{}
	s     *sampler
	send  func(proto.Stats) error
}

// startStats starts sampling for an exec whose request asked for it, writing frames
// to w under wmu (the exec's one-frame-at-a-time lock).
func (s *Server) startStats(w io.Writer, wmu *sync.Mutex, ms int64) *statsLoop {
	if ms <= 0 {
		return nil
	}
	send := func(st proto.Stats) error {
		wmu.Lock()
		defer wmu.Unlock()
		return proto.WriteFrame(w, proto.FrameStats, proto.EncodeStats(st))
	}
	root := s.opts.ProcRoot
	if root == "" {
		root = "/proc"
	}
	l := &statsLoop{stopc: make(chan struct{}), done: make(chan struct{}), s: newSampler(procReader{root}, time.Now()), send: send}
	go l.run(time.Duration(ms) * time.Millisecond)
	return l
}

func (l *statsLoop) run(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stopc:
			return
		case now := <-t.C:
			if l.send(l.s.sample(now)) != nil {
				return // the host is gone
			}
		}
	}
}

// stop ends the loop and sends the exec's last sample, before its exit frame.
func (l *statsLoop) stop() {
	if l == nil {
		return
	}
	close(l.stopc)
	<-l.done
	_ = l.send(l.s.sample(time.Now()))
}
