package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
)

// testdata/proc holds /proc/stat, /proc/meminfo and /proc/net/dev captured from a
// Linux machine; the expected values are read off those files.
func TestParseCapturedProcFiles(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata/proc", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// cpu  1938202 406 344785 1615304 29586 0 10844 8648 5 0
	busy, total, ok := parseProcStat(read("stat"))
	wantBusy := uint64(1938202 + 406 + 344785 + 0 + 10844 + 8648)
	if !ok || busy != wantBusy || total != wantBusy+1615304+29586 {
		t.Errorf("parseProcStat = %d, %d, %v; want %d, %d, true", busy, total, ok, wantBusy, wantBusy+1615304+29586)
	}
	used, memTotal, ok := parseMeminfo(read("meminfo"))
	if !ok || memTotal != 24684096<<10 || used != (24684096-24013132)<<10 {
		t.Errorf("parseMeminfo = %d, %d, %v; want %d, %d, true", used, memTotal, ok, (24684096-24013132)<<10, 24684096<<10)
	}
	// lo is left out; eth0 and two idle ifb interfaces count.
	rx, tx, ok := parseNetDev(read("net/dev"))
	if !ok || rx != 2636122352 || tx != 10251518 {
		t.Errorf("parseNetDev = %d, %d, %v; want 2636122352, 10251518, true", rx, tx, ok)
	}
}

func TestParseMalformedProcFiles(t *testing.T) {
	for _, c := range []string{"", "cpu", "cpu 1 2 3", "cpu0 1 2 3 4 5", "cpu 1 2 x 4 5", "intr 1 2 3 4 5\ncpu 1 2 3 4 5", "cpu -1 2 3 4 5"} {
		if _, _, ok := parseProcStat([]byte(c)); ok {
			t.Errorf("parseProcStat(%q) ok, want refused", c)
		}
	}
	if b, tot, ok := parseProcStat([]byte("cpu 1 2 3 4\n")); !ok || b != 6 || tot != 10 {
		t.Errorf("a 2.4 kernel's 4-field cpu line: %d, %d, %v; want 6, 10, true", b, tot, ok)
	}
	for _, c := range []string{
		"", "MemTotal: 100 kB", "MemAvailable: 5 kB", "MemTotal: x kB\nMemAvailable: 5 kB",
		"MemTotal: 100 MB\nMemAvailable: 5 kB", "MemTotal: 99999999999999999999 kB\nMemAvailable: 5 kB",
	} {
		if _, _, ok := parseMeminfo([]byte(c)); ok {
			t.Errorf("parseMeminfo(%q) ok, want refused", c)
		}
	}
	// More available than total (a torn read): used is 0, never an underflow.
	if used, tot, ok := parseMeminfo([]byte("MemTotal: 100 kB\nMemAvailable: 200 kB\n")); !ok || used != 0 || tot != 100<<10 {
		t.Errorf("available above total: %d, %d, %v; want 0, %d, true", used, tot, ok, 100<<10)
	}
	// A short line, a non-number and a missing colon are skipped; eth0 touching its
	// counter still counts.
	dev := "Inter-|   Receive\n face |bytes\n" +
		"  bad: 1 2 3\n  odd: x 0 0 0 0 0 0 0 y 0 0 0 0 0 0 0\n  nocolon 5 0 0 0 0 0 0 0 5 0 0 0 0 0 0 0\n" +
		"eth0:7 0 0 0 0 0 0 0 9 0 0 0 0 0 0 0\n"
	if rx, tx, ok := parseNetDev([]byte(dev)); !ok || rx != 7 || tx != 9 {
		t.Errorf("parseNetDev(malformed lines + eth0:7/9) = %d, %d, %v; want 7, 9, true", rx, tx, ok)
	}
	if _, _, ok := parseNetDev([]byte("garbage\n")); ok {
		t.Error("parseNetDev of a file without interfaces ok, want refused")
	}
}

// writeProc writes a fake /proc under dir.
func writeProc(t *testing.T, dir, stat, meminfo, netdev string, pids ...string) {
	t.Helper()
	for name, content := range map[string]string{"stat": stat, "meminfo": meminfo, "net/dev": netdev} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range pids {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func netdev(rx, tx int) string {
	return "h\nh\n    lo: 50 0 0 0 0 0 0 0 50 0 0 0 0 0 0 0\n  eth0: " +
		strconv.Itoa(rx) + " 0 0 0 0 0 0 0 " + strconv.Itoa(tx) + " 0 0 0 0 0 0 0\n"
}

func TestSamplerDeltas(t *testing.T) {
	dir := t.TempDir()
	mem := "MemTotal: 409600 kB\nMemAvailable: 307200 kB\n"
	writeProc(t, dir, "cpu 100 0 0 900 0 0 0 0\n", mem, netdev(1000, 500), "1", "2", "self")
	t0 := time.Now()
	s := newSampler(procReader{dir}, t0)
	// 300 of the next 400 jiffies busy; 4096 bytes in, 1024 out; a third process.
	writeProc(t, dir, "cpu 400 0 0 1000 0 0 0 0\n", "MemTotal: 409600 kB\nMemAvailable: 256000 kB\n", netdev(5096, 1524), "3")
	got := s.sample(t0.Add(500 * time.Millisecond))
	want := proto.Stats{Elapsed: 500 * time.Millisecond, CPU: 0.75, CPUValid: true, MemUsed: 150 << 20, MemTotal: 400 << 20, NetRx: 4096, NetTx: 1024, Procs: 3}
	if got != want {
		t.Errorf("sample = %+v, want %+v", got, want)
	}
	// No jiffy passed: no CPU value rather than a made-up one; an interface gone
	// (counters lower than at the start) counts 0, not a wrapped-around number.
	writeProc(t, dir, "cpu 400 0 0 1000 0 0 0 0\n", mem, netdev(10, 10))
	got = s.sample(t0.Add(600 * time.Millisecond))
	if got.CPUValid || got.CPU != 0 || got.NetRx != 0 || got.NetTx != 0 {
		t.Errorf("sample without a CPU delta and with lower counters = %+v, want no CPU and 0 bytes", got)
	}
	// Unreadable files: zeros, no CPU, and the sample still encodes.
	empty := newSampler(procReader{filepath.Join(dir, "missing")}, t0)
	got = empty.sample(t0.Add(time.Second))
	if got != (proto.Stats{Elapsed: time.Second}) {
		t.Errorf("sample of a missing /proc = %+v, want only the elapsed time", got)
	}
	if _, err := proto.DecodeStats(proto.EncodeStats(got)); err != nil {
		t.Errorf("the empty sample does not decode: %v", err)
	}
}

// An exec that asks for samples gets one per interval while it runs and one at its
// end, before its exit status; the host's /proc stands for the guest's.
func TestExecSendsStats(t *testing.T) {
	e := start(t, Options{Unconfined: true})
	var got []proto.Stats
	res, err := e.client.Exec(ctxT(t), proto.ExecRequest{
		Args: []string{"sh", "-c", "sleep 0.45"}, StatsInterval: 100 * time.Millisecond,
		OnStats: func(s proto.Stats) { got = append(got, s) },
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v, %v", res, err)
	}
	if len(got) < 3 || len(got) > 7 {
		t.Fatalf("a 450ms exec sampled every 100ms sent %d samples, want 3 to 7: %+v", len(got), got)
	}
	for i, s := range got {
		if s.MemTotal == 0 || s.MemUsed == 0 || s.Procs == 0 {
			t.Errorf("sample %d has no memory or process count: %+v", i, s)
		}
		if i > 0 && s.Elapsed < got[i-1].Elapsed {
			t.Errorf("sample %d at %v is before sample %d at %v", i, s.Elapsed, i-1, got[i-1].Elapsed)
		}
	}
	if last := got[len(got)-1].Elapsed; last < 400*time.Millisecond {
		t.Errorf("the last sample is at %v, want the exec's end (>= 400ms)", last)
	}

	// Without OnStats the request asks for nothing and no frame comes.
	if _, err := e.client.Exec(ctxT(t), proto.ExecRequest{Args: []string{"sleep", "0.25"}, StatsInterval: 100 * time.Millisecond}); err != nil {
		t.Fatalf("exec without OnStats: %v", err)
	}
}
