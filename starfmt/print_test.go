package starfmt

import "testing"

func TestRealign(t *testing.T) {
	out := "for S in (a or\n          b):\n    c(\n        d,\n    )\n"
	probe := "for S________ in (a or\n                  b):\n    c(\n        d,\n    )\n"
	want := "for S in (a or\n       b):\n    c(\n        d,\n    )\n"
	if got := realign([]byte(out), []byte(probe), 8, 3); string(got) != want {
		t.Errorf("realign = %q, want %q", got, want)
	}
	if got := realign([]byte(out), []byte("x\n"), 8, 3); string(got) != out {
		t.Errorf("realign with a probe of other lines = %q, want out unchanged", got)
	}
}
