package agent

import (
	"strings"
	"testing"
)

func TestKeyedCounter(t *testing.T) {
	events := []byte("low 0\nhigh 0\nmax 31\noom 2\noom_kill 1\noom_group_kill 1\n")
	for key, want := range map[string]int64{"oom_kill": 1, "max": 31, "oom": 2} {
		if n, err := keyedCounter(events, key); err != nil || n != want {
			t.Errorf("%s = %d, %v; want %d", key, n, err, want)
		}
	}
	for in, want := range map[string]string{
		"oom 1\n":           "no oom_kill line",
		"oom_kill many\n":   `oom_kill "many" is not a count`,
		"oom_killer 3\n":    "no oom_kill line",
		"":                  "no oom_kill line",
		"oom_kill -\nx 1\n": `oom_kill "-" is not a count`,
	} {
		if _, err := keyedCounter([]byte(in), "oom_kill"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
