package fakechv

import (
	"testing"
)

func TestParseConnect(t *testing.T) {
	for line, want := range map[string]uint32{"CONNECT 1024": 1024, "CONNECT 0": 0, "CONNECT 4294967295": 4294967295} {
		if got, err := ParseConnect(line); err != nil || got != want {
			t.Errorf("ParseConnect(%q) = %d, %v; want %d", line, got, err, want)
		}
	}
	for _, line := range []string{"", "CONNECT", "CONNECT ", "connect 1", "CONNECT -1", "CONNECT 4294967296", "CONNECT 1 2", "CONNECT +1"} {
		if _, err := ParseConnect(line); err == nil {
			t.Errorf("ParseConnect(%q) accepted", line)
		}
	}
}

func FuzzParseConnect(f *testing.F) {
	for _, s := range []string{"CONNECT 1024", "CONNECT x", "", "CONNECT 99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, err := ParseConnect(line)
		if err != nil {
			return
		}
		if again, err := ParseConnect("CONNECT " + uitoa(p)); err != nil || again != p {
			t.Fatalf("round trip of %q: %d, %v", line, again, err)
		}
	})
}

func uitoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
