package proto

import (
	"strings"
	"testing"
)

func TestCheckMountPath(t *testing.T) {
	for _, ok := range []string{"/data", "/workspace/data", "/tmp/cache", "/opt/tools", "/proc2", "/devices"} {
		if err := CheckMountPath(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for p, want := range map[string]string{
		"data":                          "absolute",
		"/":                             "guest root",
		"/data/../etc":                  "clean",
		"/data/":                        "clean",
		"/proc":                         "under /proc",
		"/sys/fs":                       "under /sys",
		"/dev/shm":                      "under /dev",
		"/run/voidbox":                  "under /run",
		"/init":                         "under /init",
		"/etc/voidbox":                  "under /etc/voidbox",
		"/workspace":                    "hide the stage's /workspace",
		"/tmp":                          "hide the stage's /tmp",
		"/a\x00b":                       "NUL",
		"/" + strings.Repeat("a", 1100): "at most 1024",
	} {
		err := CheckMountPath(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", p, err, want)
		}
	}
}

func TestBootConfigMounts(t *testing.T) {
	base := BootConfig{Secret: strings.Repeat("ab", 32), Root: "rootfs",
		Mounts: []Mount{{Kind: MountVirtiofs, Source: "fs0", Path: "/data"}, {Kind: MountDisk, Source: "skill0", Path: "/opt/skill", ReadOnly: true}}}
	js, err := base.JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseBootJSON(js)
	if err != nil || back.Root != "rootfs" || len(back.Mounts) != 2 || back.Mounts[1] != base.Mounts[1] {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for name, tc := range map[string]struct {
		mutate func(*BootConfig)
		want   string
	}{
		"root serial": {func(c *BootConfig) { c.Root = "a b" }, "root disk"},
		"kind":        {func(c *BootConfig) { c.Mounts[0].Kind = "nfs" }, "kind"},
		"source":      {func(c *BootConfig) { c.Mounts[0].Source = "fs,0" }, "source"},
		"rw disk":     {func(c *BootConfig) { c.Mounts[1].ReadOnly = false }, "read-only"},
		"path":        {func(c *BootConfig) { c.Mounts[0].Path = "/proc/x" }, "under /proc"},
		"twice":       {func(c *BootConfig) { c.Mounts[1].Path = "/data" }, "mounted twice"},
		"too many":    {func(c *BootConfig) { c.Mounts = make([]Mount, MaxMounts+1) }, "at most"},
	} {
		t.Run(name, func(t *testing.T) {
			c := base
			c.Mounts = append([]Mount(nil), base.Mounts...)
			tc.mutate(&c)
			err := c.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
