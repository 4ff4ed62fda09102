package guestimage

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("\x7fELF"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseModinfo(data) // must not panic on a corrupt module
	})
}

func FuzzParseModinfoSection(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_net\x00"))
	f.Add([]byte("depends=\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		info := parseModinfoSection(raw)
		for _, d := range info.depends {
			if d == "" || strings.Contains(d, ",") || strings.Contains(d, "-") {
				t.Fatalf("bad dependency name %q", d)
			}
		}
	})
}

func FuzzParseApplets(f *testing.F) {
	f.Add([]byte("bin/sh\nusr/bin/wget\nsbin/poweroff\nlinuxrc\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		a := NewArchive()
		for _, p := range parseApplets(out) {
			if !strings.HasPrefix(p, "/bin/") && !strings.HasPrefix(p, "/sbin/") {
				t.Fatalf("applet path %q escapes /bin and /sbin", p)
			}
			if err := a.AddSymlink(p, "/bin/busybox"); err != nil {
				t.Fatalf("applet %q: %v", p, err)
			}
		}
		var buf bytes.Buffer
		if err := a.Write(&buf); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseAptDepends(f *testing.F) {
	f.Add([]byte("linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		if name, err := parseAptDepends(out); err == nil && (strings.ContainsAny(name, " \n/") || !strings.HasPrefix(name, "linux-image-")) {
			t.Fatalf("accepted package name %q", name)
		}
	})
}

// FuzzParseKernelConfig: the parser reads a running guest's /proc/config.gz
// in the tests; whatever it gets, every symbol it returns is a CONFIG_ name
// and a fragment always agrees with itself.
func FuzzParseKernelConfig(f *testing.F) {
	f.Add(kernelFragment)
	f.Add([]byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x=y\"\n#CONFIG_D is not set\nCONFIG_E=n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := ParseKernelConfig(data)
		for sym, val := range cfg {
			if !strings.HasPrefix(sym, "CONFIG_") || strings.ContainsAny(sym, " =#\n") || strings.Contains(val, "\n") {
				t.Fatalf("parsed %q=%q", sym, val)
			}
		}
		if err := CheckKernelConfig(data, data); err != nil {
			t.Fatalf("a config disagrees with itself: %v", err)
		}
	})
}
