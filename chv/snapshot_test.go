package chv

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voidbox/voidbox/chv/internal/fakechv"
	"github.com/voidbox/voidbox/internal/vmstate"
	"github.com/voidbox/voidbox/runtime"
)

// saveFakeSnapshot boots a snapshot VM under the fake and saves it; it returns the
// snapshot directory and the snapshot VM's state directory.
func saveFakeSnapshot(t *testing.T, d *Driver) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg := testConfig(t)
	rm, err := d.SnapshotBoot(ctx, cfg, dir)
	if err != nil {
		t.Fatalf("snapshot boot: %v", err)
	}
	m := rm.(*machine)
	if err := d.SaveSnapshot(ctx, m, dir); err != nil {
		t.Fatalf("save: %v", err)
	}
	checkGone(t, m)
	return dir, cfg.StateDir
}

// fileStamp is what the tests compare to tell that nobody touched a file.
type fileStamp struct {
	mtime time.Time
	size  int64
	sum   [32]byte
}

func stamps(t *testing.T, dir string) map[string]fileStamp {
	t.Helper()
	out := map[string]fileStamp{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileStamp{mtime: st.ModTime(), size: st.Size(), sum: sha256.Sum256(data)}
	}
	return out
}

func restoreConfigFor(t *testing.T) runtime.VMConfig {
	cfg := testConfig(t)
	cfg.Cmdline = ""
	return cfg
}

func TestSnapshotID(t *testing.T) {
	d := fakeDriver(t, "normal")
	for range 2 {
		id, err := d.SnapshotID(context.Background(), "/k", "/i")
		if err != nil || id != "cloud-hypervisor/kvm/v53.0-fake" {
			t.Fatalf("SnapshotID = %q, %v; want cloud-hypervisor/kvm/v53.0-fake", id, err)
		}
	}
	_, err := New(Options{Binary: "cloud-hypervisor-does-not-exist"}).SnapshotID(context.Background(), "/k", "/i")
	if err == nil || !strings.Contains(err.Error(), "is not on $PATH") {
		t.Fatalf("SnapshotID without the binary: %v", err)
	}
}

func TestParseVersion(t *testing.T) {
	good := map[string]string{
		"cloud-hypervisor v53.0-246-gae44c297\nMigration Protocol Versions: 1.0\n": "v53.0-246-gae44c297",
		"cloud-hypervisor v41.0\n": "v41.0",
		"cloud-hypervisor 44.0":    "44.0",
	}
	for out, want := range good {
		if got, err := parseVersion([]byte(out)); err != nil || got != want {
			t.Errorf("parseVersion(%q) = %q, %v; want %q", out, got, err, want)
		}
	}
	for _, out := range []string{"", "\n", "cloud-hypervisor\n", "cloud-hypervisor v1 extra\n", "v1\n",
		"cloud-hypervisor v1\x00\n", "cloud-hypervisor " + strings.Repeat("9", 129)} {
		if got, err := parseVersion([]byte(out)); err == nil || !strings.Contains(err.Error(), "is not \"cloud-hypervisor VERSION\"") {
			t.Errorf("parseVersion(%q) = %q, %v; want a refusal quoting the line", out, got, err)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	f.Add([]byte("cloud-hypervisor v53.0-246-gae44c297\nMigration Protocol Versions: 1.0\n"))
	f.Add([]byte("cloud-hypervisor \xff\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		v, err := parseVersion(out)
		if err != nil {
			return
		}
		if v == "" || len(v) > maxVersion || !printableWord(v) || !strings.Contains(string(out), v) {
			t.Fatalf("parseVersion(%q) = %q: not a printable word of the output", out, v)
		}
	})
}

// The whole warm-start path against the fake: a save, then two restores from the one
// snapshot at once, each with its own state dir, and neither touching the snapshot's
// files or the saved VM's.
func TestSaveThenTwoRestores(t *testing.T) {
	d := fakeDriver(t, "normal")
	dir, oldState := saveFakeSnapshot(t, d)
	for _, f := range []string{snapConfigFile, snapStateFile, fakechv.SnapshotMemoryFile, snapMetaFile} {
		if st, err := os.Lstat(filepath.Join(dir, f)); err != nil || !st.Mode().IsRegular() {
			t.Fatalf("snapshot file %s: %v", f, err)
		}
	}
	var meta snapMeta
	if err := readJSONFile(filepath.Join(dir, snapMetaFile), &meta); err != nil || meta.StateDir != oldState {
		t.Fatalf("%s: %+v, %v; want state dir %s", snapMetaFile, meta, err, oldState)
	}
	before, oldBefore := stamps(t, dir), stamps(t, oldState)
	time.Sleep(10 * time.Millisecond) // so that a write would show in the mtimes

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var lines [2][]string
	var linesMu sync.Mutex
	ms := make([]*machine, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range ms {
		cfg := restoreConfigFor(t)
		cfg.Name = "restored" + string(rune('a'+i))
		cfg.Kernel, cfg.Initramfs = "/image/vmlinuz", "/image/initrd.img" // the guest image moved
		cfg.ConsoleLine = func(l string) {
			linesMu.Lock()
			lines[i] = append(lines[i], l)
			linesMu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rm, err := d.Restore(ctx, cfg, dir)
			if err == nil {
				ms[i] = rm.(*machine)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		t.Cleanup(func() { ms[i].Kill() })
	}
	if ms[0].paths.Vsock == ms[1].paths.Vsock {
		t.Fatal("both restored VMs have one vsock path")
	}
	for i, m := range ms {
		var info struct {
			State  string
			Config vmConfig
		}
		if err := m.api.call(ctx, http.MethodGet, "vm.info", nil, &info); err != nil {
			t.Fatal(err)
		}
		c := info.Config
		if info.State != "Running" || c.Vsock == nil || c.Vsock.Socket != m.paths.Vsock || c.Serial.File != m.paths.Console {
			t.Errorf("vm %d: state %q, vsock %+v, serial %+v; want Running on %s and %s", i, info.State, c.Vsock, c.Serial, m.paths.Vsock, m.paths.Console)
		}
		if c.Payload.Kernel != "/image/vmlinuz" || c.Payload.Initramfs != "/image/initrd.img" || c.Payload.Cmdline != "console=ttyS0 reboot=k panic=-1 quiet voidbox.secret=abc" {
			t.Errorf("vm %d: payload %+v; want the new image paths and the snapshot's command line", i, c.Payload)
		}
		// The VMM read the snapshot's own state and memory through links.
		for _, f := range []string{snapStateFile, fakechv.SnapshotMemoryFile} {
			if target, err := os.Readlink(filepath.Join(m.paths.Dir, restoreDir, f)); err != nil || target != filepath.Join(dir, f) {
				t.Errorf("vm %d: %s/%s -> %q, %v; want a link to the snapshot's", i, restoreDir, f, target, err)
			}
		}
		conn, err := m.DialAgent(ctx)
		if err != nil {
			t.Fatalf("vm %d: %v", i, err)
		}
		conn.Write([]byte("ping"))
		conn.(interface{ CloseWrite() error }).CloseWrite()
		got, _ := io.ReadAll(conn)
		conn.Close()
		if string(got) != "ping" {
			t.Errorf("vm %d: agent echo %q", i, got)
		}
		if tail := m.ConsoleTail(64); tail != "fake guest restored\nfake guest resumed\n" {
			t.Errorf("vm %d: ConsoleTail = %q; want the restored guest's own console", i, tail)
		}
	}
	if err := ms[0].Shutdown(ctx); err != nil {
		t.Errorf("shutdown of a restored VM: %v", err)
	}
	if err := ms[1].Kill(); err != nil {
		t.Errorf("kill of a restored VM: %v", err)
	}
	for i, m := range ms {
		checkGone(t, m)
		if m.Err() != nil {
			t.Errorf("vm %d: Err after Shutdown/Kill: %v", i, m.Err())
		}
		linesMu.Lock()
		if got := strings.Join(lines[i], "|"); got != "fake guest restored|fake guest resumed" {
			t.Errorf("vm %d: console lines %q", i, got)
		}
		linesMu.Unlock()
	}
	if after := stamps(t, dir); !equalStamps(before, after) {
		t.Errorf("the snapshot's files changed:\nbefore %v\nafter  %v", before, after)
	}
	if after := stamps(t, oldState); !equalStamps(oldBefore, after) {
		t.Errorf("the saved VM's state dir changed:\nbefore %v\nafter  %v", oldBefore, after)
	}
}

func equalStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !v.mtime.Equal(w.mtime) || v.size != w.size || v.sum != w.sum {
			return false
		}
	}
	return true
}

// copySnapshot copies a snapshot directory, so that a test can spoil one file.
func copySnapshot(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestRestoreFailsCleanly(t *testing.T) {
	d := fakeDriver(t, "normal")
	good, _ := saveFakeSnapshot(t, d)
	spoil := func(name, content string) string {
		dir := copySnapshot(t, good)
		os.Remove(filepath.Join(dir, name))
		if content != "" {
			os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600)
		}
		return dir
	}
	cases := []struct {
		name    string
		dir     string
		started bool // whether cloud-hypervisor was started before the failure
		want    []string
	}{
		{"missing directory", filepath.Join(good, "nope"), false, []string{"restore box1 from", "voidbox-chv.json: no such file or directory", "not a snapshot made by"}},
		{"no voidbox-chv.json", spoil(snapMetaFile, ""), false, []string{"voidbox-chv.json: no such file or directory"}},
		{"voidbox-chv.json corrupt", spoil(snapMetaFile, `{"state_dir":3}`), false, []string{"voidbox-chv.json: json: cannot unmarshal number"}},
		{"config.json missing", spoil(snapConfigFile, ""), false, []string{"config.json: no such file or directory"}},
		{"config.json corrupt", spoil(snapConfigFile, `{"cpus":`), false, []string{"config.json: not a JSON VmConfig: unexpected EOF"}},
		{"state.json missing", spoil(snapStateFile, ""), false, []string{"no state.json"}},
		{"state.json corrupt", spoil(snapStateFile, `{"snapshot_data":`), true, []string{"restore box1 under cloud-hypervisor: vm.restore from", "chv: PUT /api/v1/vm.restore: 500 Internal Server Error: Error from API: The VM could not be restored: Cannot restore VM", "unexpected end of JSON input"}},
		{"memory-ranges missing", spoil(fakechv.SnapshotMemoryFile, ""), true, []string{"vm.restore", "Cannot open the snapshot file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := restoreConfigFor(t)
			m, err := d.Restore(context.Background(), cfg, tc.dir)
			if err == nil {
				m.Kill()
				t.Fatal("restore succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			for _, f := range []string{"api.sock", "vsock.sock"} {
				if _, err := os.Stat(filepath.Join(cfg.StateDir, f)); err == nil {
					t.Errorf("%s left behind", f)
				}
			}
			checkNoChildren(t)
			log := filepath.Join(cfg.StateDir, "vmm.log")
			if _, err := os.Stat(log); (err == nil) != tc.started {
				t.Errorf("vmm.log exists: %v, want %v (cloud-hypervisor started only for a source it must judge)", err == nil, tc.started)
			}
			checkNoViolations(t, log)
		})
	}
}

func TestRestoreRefusesAnotherVM(t *testing.T) {
	d := fakeDriver(t, "normal")
	dir, _ := saveFakeSnapshot(t, d)
	cases := map[string]struct {
		change func(*runtime.VMConfig)
		want   string
	}{
		"memory":  {func(c *runtime.VMConfig) { c.MemoryMB = 512 }, "memory.size is 268435456, want 536870912: vm box1 asks for 512 MiB of memory"},
		"vcpus":   {func(c *runtime.VMConfig) { c.VCPUs = 1 }, "cpus.boot_vcpus is 2, want 1"},
		"cmdline": {func(c *runtime.VMConfig) { c.Cmdline = "voidbox.boot=x" }, `VMConfig.Cmdline "voidbox.boot=x" would go unread`},
		"share": {func(c *runtime.VMConfig) { c.Shares = []runtime.Share{{Tag: "t", HostPath: "/tmp"}} },
			"takes no shares, disks or network"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := restoreConfigFor(t)
			tc.change(&cfg)
			m, err := d.Restore(context.Background(), cfg, dir)
			if err == nil {
				m.Kill()
				t.Fatal("restore succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, "vmm.log")); err == nil {
				t.Error("cloud-hypervisor was started for a VM the snapshot cannot be")
			}
		})
	}
}

func TestSaveSnapshotErrors(t *testing.T) {
	d := fakeDriver(t, "normal")
	ctx := context.Background()

	booted := bootFake(t, "normal")
	if err := d.SaveSnapshot(ctx, booted, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not started by SnapshotBoot") {
		t.Errorf("save of a machine from Boot: %v", err)
	}

	// vm.snapshot creates its files exclusively: a directory that has one fails, and
	// the error names the call and Cloud Hypervisor's answer; the VMM is reaped.
	dir := t.TempDir()
	rm, err := d.SnapshotBoot(ctx, testConfig(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SaveSnapshot(ctx, rm, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not started by SnapshotBoot with that directory") {
		t.Errorf("save into another directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, snapConfigFile), []byte("{}"), 0o600)
	err = d.SaveSnapshot(ctx, rm, dir)
	for _, w := range []string{"chv: save snapshot of vm box1 into " + dir, "PUT /api/v1/vm.snapshot: 500 Internal Server Error", "Error creating VM config snapshot file", "file exists"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("save into a used directory: %v\nwant it to contain %q", err, w)
		}
	}
	checkGone(t, rm.(*machine))

	// A snapshot boot takes the devices every snapshot has, nothing more.
	cfg := testConfig(t)
	cfg.Disks = []runtime.Disk{{ID: "root", Path: "/tmp/root.img"}}
	if _, err := d.SnapshotBoot(ctx, cfg, t.TempDir()); err == nil || !strings.Contains(err.Error(), "takes no shares, disks or network") {
		t.Errorf("snapshot boot with a disk: %v", err)
	}
}

// A snapshot config as Cloud Hypervisor writes it (its serde output: flattened
// sections, null for every unset option), and the paths of the VM it came from.
const sampleConfig = `{"cpus":{"boot_vcpus":2,"max_vcpus":2},"memory":{"size":268435456,"shared":false,"thp":true},
 "payload":{"firmware":null,"kernel":"/old/vmlinuz","initramfs":"/old/initrd","cmdline":"console=ttyS0 x","igvm":null},"rng":{"src":"/dev/urandom"},
 "serial":{"mode":"File","file":"/tmp/voidbox-1-a/console.log","socket":null},"console":{"mode":"Off","file":null,"iommu":false,"socket":null},
 "vsock":{"cid":18446744073709551,"socket":"/tmp/voidbox-1-a/vsock.sock"},"extra":["/tmp/voidbox-1-a","/tmp/voidbox-1-ab/x","<&>"]}`

func TestRewriteConfig(t *testing.T) {
	p, err := pathsIn("/run/new")
	if err != nil {
		t.Fatal(err)
	}
	cfg := runtime.VMConfig{Name: "b", Kernel: "/k", MemoryMB: 256, VCPUs: 2}
	out, err := rewriteConfig([]byte(sampleConfig), "/tmp/voidbox-1-a", cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	d := json.NewDecoder(strings.NewReader(string(out)))
	d.UseNumber()
	if err := d.Decode(&got); err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{
		"vsock.socket":      "/run/new/vsock.sock",
		"serial.file":       "/run/new/console.log",
		"payload.kernel":    "/k",
		"payload.initramfs": nil, // cfg has none
		"payload.cmdline":   "console=ttyS0 x",
		"vsock.cid":         json.Number("18446744073709551"),
		"memory.thp":        true,
		"payload.firmware":  nil,
		"serial.socket":     nil,
	}
	for k, want := range checks {
		section, name, _ := strings.Cut(k, ".")
		if v := field(got, section, name); v != want {
			t.Errorf("%s = %#v, want %#v", k, v, want)
		}
	}
	// The dir itself is rewritten; a sibling whose name merely starts the same is not.
	if _, ok := got["payload"].(map[string]any)["igvm"]; !ok {
		t.Error("payload.igvm (null) was dropped; fields voidbox does not know must stay")
	}
	if extra := got["extra"].([]any); extra[0] != "/run/new" || extra[1] != "/tmp/voidbox-1-ab/x" || extra[2] != "<&>" {
		t.Errorf("extra = %q", extra)
	}

	bad := map[string]struct{ config, oldDir, want string }{
		"vsock elsewhere":    {strings.Replace(sampleConfig, "/tmp/voidbox-1-a/vsock.sock", "/var/shared.sock", 1), "/tmp/voidbox-1-a", `vsock.socket is "/var/shared.sock" after moving`},
		"serial not a file":  {strings.Replace(sampleConfig, `"mode":"File","file":"/tmp/voidbox-1-a/console.log"`, `"mode":"Tty"`, 1), "/tmp/voidbox-1-a", `serial.file is ""`},
		"relative old dir":   {sampleConfig, "tmp/voidbox-1-a", "want an absolute, clean directory"},
		"root old dir":       {sampleConfig, "/", "want an absolute, clean directory"},
		"array":              {`[1]`, "/tmp/voidbox-1-a", "a []interface {}, want an object"},
		"trailing data":      {sampleConfig + "{}", "/tmp/voidbox-1-a", "data after the object"},
		"no payload":         {strings.Replace(sampleConfig, `"payload"`, `"payloads"`, 1), "/tmp/voidbox-1-a", "payload is <nil>"},
		"memory as a string": {strings.Replace(sampleConfig, `"size":268435456`, `"size":"256M"`, 1), "/tmp/voidbox-1-a", "memory.size is 256M, want 268435456"},
	}
	for name, tc := range bad {
		if _, err := rewriteConfig([]byte(tc.config), tc.oldDir, cfg, p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant it to contain %q", name, err, tc.want)
		}
	}
}

func FuzzRewriteConfig(f *testing.F) {
	f.Add([]byte(sampleConfig))
	f.Add([]byte(`{"vsock":{"socket":"/tmp/voidbox-1-a/vsock.sock"},"serial":{"file":"/tmp/voidbox-1-a/console.log"},"memory":{"size":1},"cpus":{"boot_vcpus":1},"payload":{}}`))
	p, err := pathsIn("/run/new")
	if err != nil {
		f.Fatal(err)
	}
	cfg := runtime.VMConfig{Name: "b", Kernel: "/k", Initramfs: "/i", MemoryMB: 256, VCPUs: 2}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := rewriteConfig(raw, "/tmp/voidbox-1-a", cfg, p)
		if err != nil {
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q is not a JSON object: %v", out, err)
		}
		if field(got, "vsock", "socket") != p.Vsock || field(got, "serial", "file") != p.Console || field(got, "payload", "kernel") != "/k" {
			t.Fatalf("output %q keeps another VM's devices or kernel", out)
		}
		if s, ok := findUnder(got, "/tmp/voidbox-1-a"); ok {
			t.Fatalf("output %q still names %q, in the saved VM's state dir", out, s)
		}
	})
}

// findUnder returns a string value in v that is dir or under it.
func findUnder(v any, dir string) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, t == dir || strings.HasPrefix(t, dir+"/")
	case map[string]any:
		for _, e := range t {
			if s, ok := findUnder(e, dir); ok {
				return s, true
			}
		}
	case []any:
		for _, e := range t {
			if s, ok := findUnder(e, dir); ok {
				return s, true
			}
		}
	}
	return "", false
}

func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "config.json")
	os.WriteFile(big, make([]byte, 10), 0o600)
	if _, err := readBounded(big, 9); err == nil || !strings.Contains(err.Error(), "has 10 bytes, more than the 9") {
		t.Errorf("oversized: %v", err)
	}
	if _, err := readBounded(dir, 9); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if b, err := readBounded(big, 10); err != nil || len(b) != 10 {
		t.Errorf("at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := readBounded(filepath.Join(dir, "none"), 9); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// sandbox/vm builds snapshots with no StateDir: the snapshot VM gets a state dir of
// its own, gone with it, and what it saved restores as any snapshot.
func TestSnapshotBootWithoutStateDir(t *testing.T) {
	d := fakeDriver(t, "normal")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.StateDir = ""
	rm, err := d.SnapshotBoot(ctx, cfg, dir)
	if err != nil {
		t.Fatalf("snapshot boot without a state dir: %v", err)
	}
	m := rm.(*machine)
	if !strings.HasPrefix(filepath.Base(m.paths.Dir), vmstate.Prefix(os.Getpid())) {
		t.Errorf("state dir %s is not one vmstate.Sweep would find after a crash", m.paths.Dir)
	}
	if err := d.SaveSnapshot(ctx, m, dir); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m)
	if _, err := os.Stat(m.paths.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the snapshot VM's own state dir remains: %v", err)
	}
	restored, err := d.Restore(ctx, restoreConfigFor(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := restored.Kill(); err != nil {
		t.Error(err)
	}
	checkGone(t, restored.(*machine))
}
