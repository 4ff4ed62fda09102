package runtime

import (
	"testing"
	"time"
)

func cpu(v float64) *float64 { return &v }

func TestGuestRecorderSummary(t *testing.T) {
	var g guestRecorder
	if g.summary() != nil {
		t.Fatal("a recorder without samples has a summary, want nil (nothing measured)")
	}
	for _, s := range []GuestSample{
		{AtMS: 500, CPU: cpu(1), MemBytes: 40 << 20, MemTotalBytes: 400 << 20, Procs: 50},
		{AtMS: 1000, CPU: cpu(0.5), MemBytes: 90 << 20, MemTotalBytes: 400 << 20, NetRxBytes: 10, Procs: 52},
		{AtMS: 900, CPU: cpu(0), MemBytes: 1 << 30, Procs: 999}, // out of order: dropped
		{AtMS: 1000, MemBytes: 60 << 20, MemTotalBytes: 400 << 20, NetRxBytes: 30, NetTxBytes: 7, Procs: 49},
		{AtMS: 3000, CPU: cpu(0.25), MemBytes: 50 << 20, MemTotalBytes: 400 << 20, NetRxBytes: 40, NetTxBytes: 8, Procs: 49},
	} {
		g.add(s)
	}
	st := g.summary()
	// Time-weighted: 1 over 500ms, 0.5 over 500ms, 0.25 over 2000ms = 1250/3000.
	if st.SampleCount != 4 || len(st.Samples) != 4 || st.CPUMean == nil || *st.CPUMean != 1250.0/3000 || *st.CPUPeak != 1 ||
		st.MemStartBytes != 40<<20 || st.MemPeakBytes != 90<<20 || st.MemTotalBytes != 400<<20 ||
		st.NetRxBytes != 40 || st.NetTxBytes != 8 || st.ProcsPeak != 52 {
		t.Errorf("summary = %+v (mean %v)", st, *st.CPUMean)
	}
	if st.Samples[2].CPU != nil {
		t.Errorf("a sample without CPU got %v, want none", *st.Samples[2].CPU)
	}
}

// A long run keeps at most MaxGuestSamples, merged in time order, covering the whole
// run, with peaks kept.
func TestGuestRecorderDownsamples(t *testing.T) {
	var g guestRecorder
	const n = 10000
	for i := 1; i <= n; i++ {
		mem := uint64(100 << 20)
		if i == 7777 {
			mem = 300 << 20 // one spike must survive the merging
		}
		g.add(GuestSample{AtMS: int64(i) * 500, CPU: cpu(float64(i % 2)), MemBytes: mem, MemTotalBytes: 400 << 20, Procs: i % 7})
	}
	st := g.summary()
	if st.SampleCount != n {
		t.Errorf("SampleCount = %d, want %d", st.SampleCount, n)
	}
	if len(st.Samples) > MaxGuestSamples || len(st.Samples) < MaxGuestSamples/2 {
		t.Fatalf("%d samples kept, want %d..%d", len(st.Samples), MaxGuestSamples/2, MaxGuestSamples)
	}
	var peak uint64
	for i, s := range st.Samples {
		if i > 0 && s.AtMS <= st.Samples[i-1].AtMS {
			t.Fatalf("kept sample %d at %dms is not after %dms", i, s.AtMS, st.Samples[i-1].AtMS)
		}
		if s.CPU == nil || *s.CPU < 0.49 || *s.CPU > 0.51 {
			t.Errorf("kept sample %d CPU %v, want the mean of alternating 0 and 1", i, s.CPU)
		}
		peak = max(peak, s.MemBytes)
	}
	if last := st.Samples[len(st.Samples)-1].AtMS; last != n*500 {
		t.Errorf("the last kept sample is at %dms, want the run's end %d", last, n*500)
	}
	if peak != 300<<20 || st.MemPeakBytes != 300<<20 {
		t.Errorf("the memory spike is lost: kept samples peak %d, summary %d", peak, st.MemPeakBytes)
	}
}

// guestSampling dates samples from the attempt's command start, and a sample without a
// time is now.
func TestGuestSamplingTimes(t *testing.T) {
	r := &run{e: &Executor{}}
	ctx, g := r.guestSampling(t.Context(), "s")
	if !WantsGuestSamples(ctx) || WantsGuestSamples(t.Context()) {
		t.Fatal("WantsGuestSamples does not tell a sampling ctx from a plain one")
	}
	ReportGuestSample(ctx, GuestSample{At: time.Now().Add(2 * time.Second), MemTotalBytes: 1})
	ReportGuestSample(ctx, GuestSample{At: time.Now().Add(-time.Hour)}) // older: dropped
	time.Sleep(20 * time.Millisecond)
	ReportGuestSample(t.Context(), GuestSample{}) // no receiver: nothing happens
	st := g.summary()
	if st == nil || st.SampleCount != 1 || st.Samples[0].AtMS < 1990 || st.Samples[0].AtMS > 2100 {
		t.Errorf("summary %+v, want one sample at about 2000ms", st)
	}
}
