package proto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestBootJSONRoundTrip(t *testing.T) {
	secret, _ := NewSecret()
	in := BootConfig{Secret: secret, Hostname: "stage-1", Allow: []string{"sh"}, UnixTime: 1700000000}
	js, err := in.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseBootJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if want := in.WithDefaults(); got.Secret != want.Secret || got.Hostname != want.Hostname || got.UID != DefaultUID || got.Version != BootVersion || got.UnixTime != want.UnixTime {
		t.Errorf("round trip: got %+v, want %+v", got, want)
	}
}

func TestParseBootJSONStrict(t *testing.T) {
	secret, _ := NewSecret()
	good, _ := BootConfig{Secret: secret}.JSON()
	for name, c := range map[string]struct {
		js   []byte
		want string
	}{
		"unknown field": {bytes.Replace(good, []byte(`{`), []byte(`{"x":1,`), 1), `unknown field "x"`},
		"trailing data": {append(append([]byte(nil), good...), `{}`...), "trailing data"},
		"bad secret":    {[]byte(`{"v":1,"s":"abc"}`), "64 hex digits"},
		"root stage":    {[]byte(`{"v":1,"s":"` + secret + `","u":-1}`), "out of range"},
		"oversized":     {append(bytes.Repeat([]byte(" "), MaxBootJSON), good...), "at most 16384 allowed"},
		"empty":         {nil, "fw_cfg opt/voidbox/boot JSON"},
		"old version":   {[]byte(`{"v":7,"s":"` + secret + `"}`), "version 7 is not supported"},
	} {
		if _, err := ParseBootJSON(c.js); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseBootJSON error = %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestCutBootArg(t *testing.T) {
	secret, _ := NewSecret()
	arg, err := BootConfig{Secret: secret, Hostname: "h"}.KernelArg()
	if err != nil {
		t.Fatal(err)
	}
	rest, js, err := CutBootArg("quiet  " + arg + " panic=-1 -- init-arg")
	if err != nil {
		t.Fatal(err)
	}
	if rest != "quiet panic=-1 -- init-arg" {
		t.Errorf("rest = %q, want the other words in order", rest)
	}
	if strings.Contains(rest, secret) || strings.Contains(rest, "voidbox.boot=") {
		t.Errorf("rest %q still carries the boot config", rest)
	}
	var c BootConfig
	if err := json.Unmarshal(js, &c); err != nil || c.Secret != secret || c.Hostname != "h" {
		t.Errorf("JSON %s, %v: want the config with its secret", js, err)
	}
	if _, err := ParseBootJSON(js); err != nil {
		t.Errorf("the agent refuses the JSON CutBootArg made: %v", err)
	}
	// After "--" too: the guest would find it there as well.
	if rest, js, err := CutBootArg("x -- " + arg); err != nil || rest != "x --" || js == nil {
		t.Errorf("word after --: rest %q, json %d bytes, %v", rest, len(js), err)
	}
	if rest, js, err := CutBootArg("rdinit=/x -- -f"); err != nil || js != nil || rest != "rdinit=/x -- -f" {
		t.Errorf("no boot word: %q, %q, %v; want the command line unchanged and no JSON", rest, js, err)
	}
	for _, bad := range []string{arg + " " + arg, "voidbox.boot=!!", "voidbox.boot=" + strings.Repeat("A", MaxBootArg+1), "voidbox.boot=e30"} {
		if _, js, err := CutBootArg(bad); err == nil || js != nil {
			t.Errorf("CutBootArg(%.40q...) = %d bytes, %v; want an error and no JSON", bad, len(js), err)
		}
	}
}

func FuzzParseBootJSON(f *testing.F) {
	secret, _ := NewSecret()
	good, _ := BootConfig{Secret: secret, Allow: []string{"sh"}}.JSON()
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		c, err := ParseBootJSON(js)
		if err != nil {
			return
		}
		if c.UID <= 0 || c.GID <= 0 {
			t.Fatalf("accepted a root stage user: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
	})
}
