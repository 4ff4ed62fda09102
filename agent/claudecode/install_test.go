package claudecode

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	cct "github.com/voidbox/voidbox/agent/claudecode/claudecodetest"
)

func fakeOpts(reg *cct.Registry, cache, version string) Options {
	return Options{Version: version, CacheDir: cache, Registry: reg.URL, HTTPClient: reg.Client()}
}

// leftovers lists what an install left in the cache's tmp directory and
// temporary files in the version's.
func leftovers(t *testing.T, cache, version string) []string {
	t.Helper()
	var out []string
	tmp, _ := filepath.Glob(filepath.Join(cache, "tmp", "*"))
	hidden, _ := filepath.Glob(filepath.Join(cache, version, ".*"))
	return append(append(out, tmp...), hidden...)
}

func TestInstall(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	cache := t.TempDir()
	var reports []Progress
	opts := fakeOpts(reg, cache, "1.2.3")
	opts.Progress = func(p Progress) { reports = append(reports, p) }
	in, err := Install(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "1.2.3", "claude"); in.Path != want {
		t.Errorf("Path = %s, want %s", in.Path, want)
	}
	fi, err := os.Stat(in.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o755 {
		t.Errorf("mode %s, want -rwxr-xr-x", fi.Mode())
	}
	out, err := exec.Command(in.Path, "--version").Output()
	if err != nil || string(out) != "1.2.3 (Claude Code)\n" {
		t.Errorf("claude --version: %q, %v", out, err)
	}
	if in.FromCache || in.Integrity != cct.Integrity(reg.Tarball("1.2.3")) || in.Size != int64(len(cct.Script("1.2.3"))) {
		t.Errorf("Installed = %+v", in)
	}
	var meta Installed
	b, err := os.ReadFile(filepath.Join(cache, "1.2.3", "install.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.Integrity != in.Integrity || meta.SHA256 != in.SHA256 || meta.Version != "1.2.3" {
		t.Errorf("install.json = %s (%v), want the integrity and sha256 of %+v", b, err, in)
	}
	if l := leftovers(t, cache, "1.2.3"); len(l) > 0 {
		t.Errorf("left behind: %q", l)
	}
	if got := reg.Accept(); !strings.Contains(got, "application/vnd.npm.install-v1+json") {
		t.Errorf("Accept = %v, want the abbreviated document", got)
	}
	if len(reports) < 3 || reports[0].Status != StatusDownloading || reports[len(reports)-1].Status != StatusInstalled {
		t.Fatalf("progress = %+v, want downloading ... installed", reports)
	}
	var last Progress
	for _, p := range reports {
		if p.Status == StatusDownloading {
			last = p
		}
	}
	if n := int64(len(reg.Tarball("1.2.3"))); last.Done != n || last.Total != n {
		t.Errorf("last download report %+v, want %d of %d bytes", last, n, n)
	}
}

// An installed, intact version is returned without asking the registry; a
// changed executable is installed again.
func TestReinstall(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	cache := t.TempDir()
	first, err := Install(context.Background(), fakeOpts(reg, cache, "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	docs, tgzs := reg.DocGets.Load(), reg.TgzGets.Load()
	var reports []Progress
	opts := fakeOpts(reg, cache, "1.2.3")
	opts.Progress = func(p Progress) { reports = append(reports, p) }
	again, err := Install(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.FromCache || again.SHA256 != first.SHA256 || !again.Installed.Equal(first.Installed) {
		t.Errorf("second Install = %+v, want the first one's (%+v) from the cache", again, first)
	}
	if reg.DocGets.Load() != docs || reg.TgzGets.Load() != tgzs {
		t.Errorf("second Install asked the registry (%d document and %d tarball requests more)", reg.DocGets.Load()-docs, reg.TgzGets.Load()-tgzs)
	}
	if len(reports) != 1 || reports[0].Status != StatusCached {
		t.Errorf("progress = %+v, want one cached", reports)
	}

	// Same size, other content: only the hash tells.
	if err := os.WriteFile(first.Path, []byte(strings.Replace(cct.Script("1.2.3"), "1.2.3", "6.6.6", 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	fixed, err := Install(context.Background(), fakeOpts(reg, cache, "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if fixed.FromCache || reg.TgzGets.Load() != tgzs+1 {
		t.Errorf("a changed executable was not installed again (FromCache %v, %d tarball requests)", fixed.FromCache, reg.TgzGets.Load())
	}
	if b, _ := os.ReadFile(fixed.Path); string(b) != cct.Script("1.2.3") {
		t.Errorf("claude after reinstall = %q", b)
	}
}

func TestIntegrityMismatchIsRefused(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	wrong := cct.Integrity([]byte("something else"))
	reg.SetIntegrity("1.2.3", wrong)
	cache := t.TempDir()
	_, err := Install(context.Background(), fakeOpts(reg, cache, "1.2.3"))
	if err == nil {
		t.Fatal("Install of a tarball that does not match its integrity succeeded")
	}
	for _, want := range []string{"claude-code 1.2.3", wrong, cct.Integrity(reg.Tarball("1.2.3")), "the download was removed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if l := leftovers(t, cache, "1.2.3"); len(l) > 0 {
		t.Errorf("left behind: %q", l)
	}
	if _, err := os.Stat(filepath.Join(cache, "1.2.3", "claude")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("claude installed from a mismatching tarball (stat: %v)", err)
	}
}

func TestUnknownVersionNamesTheLatest(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	_, err := Install(context.Background(), fakeOpts(reg, t.TempDir(), "9.9.9"))
	var unknown *UnknownVersionError
	if !errors.As(err, &unknown) || unknown.Latest != "1.2.3" {
		t.Fatalf("err = %v, want an UnknownVersionError naming latest 1.2.3", err)
	}
	want := "claude-code 9.9.9 is not in the registry's @anthropic-ai/claude-code-linux-x64 (the latest is 1.2.3)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestLatestInstallsTheDistTag(t *testing.T) {
	reg := cct.NewRegistry(t, "1.3.0", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3"), "1.3.0": cct.GoodTarball(t, "1.3.0")})
	in, err := Install(context.Background(), fakeOpts(reg, t.TempDir(), Latest))
	if err != nil {
		t.Fatal(err)
	}
	if in.Version != "1.3.0" || filepath.Base(in.Dir()) != "1.3.0" {
		t.Errorf("latest installed %s in %s, want 1.3.0", in.Version, in.Dir())
	}
}

func TestBadTarballsAreRefused(t *testing.T) {
	good := []cct.Entry{{Name: "package/claude", Body: cct.Script("1.2.3")}, {Name: "package/package.json", Body: cct.PackageJSON("1.2.3")}}
	cases := []struct {
		name    string
		entries []cct.Entry
		want    string
	}{
		{"extra path", append(good, cct.Entry{Name: "package/postinstall.sh", Body: "rm -rf /"}), `tarball entry "package/postinstall.sh": a claude-code package holds only`},
		{"path outside package", append(good, cct.Entry{Name: "../../etc/cron.d/x", Body: "x"}), `tarball entry "../../etc/cron.d/x"`},
		{"symlink claude", []cct.Entry{{Name: "package/claude", Body: "/bin/sh", Type: tar.TypeSymlink}}, `tarball entry "package/claude": type '2', want a regular file`},
		{"huge claude", []cct.Entry{{Name: "package/claude", Size: 3 << 30}}, "package/claude is 3221225472 bytes, more than the 2048 MiB"},
		{"huge readme", append(good, cct.Entry{Name: "package/README.md", Size: 5 << 20}), `"package/README.md" is 5242880 bytes, more than the 1024 KiB`},
		{"claude twice", append(good, cct.Entry{Name: "package/claude", Body: "#!/bin/sh\n"}), "package/claude appears twice"},
		{"no claude", good[1:], "tarball: no package/claude"},
		{"other version", []cct.Entry{{Name: "package/claude", Body: cct.Script("1.2.3")}, {Name: "package/package.json", Body: cct.PackageJSON("1.2.4")}}, "package.json names @anthropic-ai/claude-code-linux-x64@1.2.4, want @anthropic-ai/claude-code-linux-x64@1.2.3"},
		{"too many entries", manyReadmes(good, 20), "more than 16 entries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.Tarball(t, c.entries...)})
			cache := t.TempDir()
			_, err := Install(context.Background(), fakeOpts(reg, cache, "1.2.3"))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "claude-code 1.2.3: ") {
				t.Fatalf("err = %v, want one starting with the version and containing %q", err, c.want)
			}
			for _, p := range []string{"claude", "install.json"} {
				if _, err := os.Stat(filepath.Join(cache, "1.2.3", p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s exists after a refused tarball (stat: %v)", p, err)
				}
			}
			if l := leftovers(t, cache, "1.2.3"); len(l) > 0 {
				t.Errorf("left behind: %q", l)
			}
		})
	}
}

func manyReadmes(good []cct.Entry, n int) []cct.Entry {
	out := append([]cct.Entry{}, good...)
	for range n {
		out = append(out, cct.Entry{Name: "package/README.md", Body: "r"})
	}
	return out
}

// Concurrent installs of one version wait for each other: one download,
// and every caller gets the same intact executable.
func TestConcurrentInstalls(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	cache := t.TempDir()
	const n = 6
	var wg sync.WaitGroup
	results := make([]*Installed, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Install(context.Background(), fakeOpts(reg, cache, "1.2.3"))
		}()
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("install %d: %v", i, errs[i])
		}
		if results[i].SHA256 != results[0].SHA256 || results[i].Path != results[0].Path {
			t.Errorf("install %d = %+v, install 0 = %+v", i, results[i], results[0])
		}
		if !results[i].FromCache {
			fresh++
		}
	}
	if got := reg.TgzGets.Load(); got != 1 || fresh != 1 {
		t.Errorf("%d downloads and %d fresh installs, want 1 and 1", got, fresh)
	}
}

// A version that is not one, or a registry over plain http to another host,
// is refused before anything is asked.
func TestOptionsAreChecked(t *testing.T) {
	reg := cct.NewRegistry(t, "1.2.3", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3")})
	cache := t.TempDir()
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Version: "../1.2.3", CacheDir: cache, Registry: reg.URL}, `claude-code version "../1.2.3" is not a version: want MAJOR.MINOR.PATCH (e.g. 2.1.332) or "latest"`},
		{Options{Version: "1.2", CacheDir: cache, Registry: reg.URL}, `"1.2" is not a version`},
		{Options{Version: "1.2.3", CacheDir: cache, Registry: "http://registry.example.com"}, `registry "http://registry.example.com": plain http is allowed only to a loopback host; use https`},
		{Options{Version: "1.2.3", CacheDir: cache, Registry: "ftp://127.0.0.1"}, `scheme "ftp", want https`},
	} {
		_, err := Install(context.Background(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Install(%+v) = %v, want %q", c.opts, err, c.want)
		}
	}
	if n := reg.DocGets.Load() + reg.TgzGets.Load(); n != 0 {
		t.Errorf("%d requests reached the registry", n)
	}
}

// The sha512 is found among other hashes; anything else is refused.
func TestParseIntegrity(t *testing.T) {
	good := cct.Integrity([]byte("x"))
	if _, err := parseIntegrity("sha1-AAAA " + good); err != nil {
		t.Errorf("a sha512 among other hashes: %v", err)
	}
	for _, bad := range []string{"", "sha1-AAAA", "sha512-!!!", "sha512-" + strings.Repeat("A", 8)} {
		if _, err := parseIntegrity(bad); err == nil {
			t.Errorf("parseIntegrity(%q) accepted", bad)
		}
	}
}

func TestList(t *testing.T) {
	reg := cct.NewRegistry(t, "1.10.0", map[string][]byte{"1.2.3": cct.GoodTarball(t, "1.2.3"), "1.10.0": cct.GoodTarball(t, "1.10.0")})
	cache := t.TempDir()
	var ins []*Installed
	for _, v := range []string{"1.10.0", "1.2.3"} {
		in, err := Install(context.Background(), fakeOpts(reg, cache, v))
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	// An interrupted install: a directory without install.json.
	if err := os.Mkdir(filepath.Join(cache, "1.0.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A root disk for 1.10.0, as RootDisk records one.
	disk := filepath.Join(cache, "1.10.0", "root.ext4")
	if err := os.WriteFile(disk, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(Disk{Size: 4096, Suite: "bookworm", ClaudeSHA256: ins[0].SHA256})
	if err := os.WriteFile(filepath.Join(cache, "1.10.0", "root.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	// One built for another executable is not 1.2.3's.
	if err := os.WriteFile(filepath.Join(cache, "1.2.3", "root.ext4"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "1.2.3", "root.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := List(cache)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Version)
	}
	if strings.Join(got, " ") != "1.0.0 1.2.3 1.10.0" {
		t.Fatalf("List versions = %q, want 1.0.0 1.2.3 1.10.0 (numeric order; tmp and lock files left out)", got)
	}
	if !strings.Contains(list[0].Problem, "not installed completely") || list[1].Problem != "" || list[2].Problem != "" {
		t.Errorf("problems = %q, %q, %q", list[0].Problem, list[1].Problem, list[2].Problem)
	}
	if list[2].RootDisk != disk || list[2].RootDiskSize != 4096 || list[1].RootDisk != "" {
		t.Errorf("root disks = %q (%d), %q", list[2].RootDisk, list[2].RootDiskSize, list[1].RootDisk)
	}
	if list[1].Size != ins[1].Size || list[1].Integrity != ins[1].Integrity {
		t.Errorf("entry 1.2.3 = %+v, want %+v", list[1].Installed, ins[1])
	}
	if list, err := List(filepath.Join(cache, "missing")); err != nil || len(list) != 0 {
		t.Errorf("List of a missing cache = %v, %v; want nothing", list, err)
	}
}

// The fake registry serves the package Install asks for.
func TestFakeRegistryServesThePackage(t *testing.T) {
	if cct.PackageName != PackageName {
		t.Errorf("claudecodetest serves %s, Install asks for %s", cct.PackageName, PackageName)
	}
}
