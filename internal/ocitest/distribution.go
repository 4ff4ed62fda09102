package ocitest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DistributionBinary is Debian's docker-registry (the CNCF distribution registry).
const DistributionBinary = "/usr/bin/docker-registry"

// Distribution is a real registry process (Debian's docker-registry) serving plain
// HTTP on a free 127.0.0.1 port, with its storage in a test temp dir.
type Distribution struct {
	Host string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	once sync.Once
	done chan struct{}
}

// Ref is the reference of repoTag in this registry.
func (d *Distribution) Ref(repoTag string) string { return d.Host + "/" + repoTag }

// StartDistribution starts docker-registry and waits until it answers /v2/; it is
// stopped (and checked gone) when the test ends. A machine without the package skips
// the test, saying what to install.
func StartDistribution(t testing.TB) *Distribution {
	t.Helper()
	if _, err := os.Stat(DistributionBinary); err != nil {
		t.Skipf("needs %s (apt-get install docker-registry; scripts/setup.sh installs it)", DistributionBinary)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)), 0o600)
	var logs strings.Builder
	cmd := exec.Command(DistributionBinary, "serve", cfg)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", DistributionBinary, err)
	}
	d := &Distribution{Host: host, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(d.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case <-d.done:
			t.Fatalf("docker-registry exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			d.Stop()
			t.Fatalf("docker-registry did not answer on %s: %v\n%s", host, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the registry and waits for its process to be gone.
func (d *Distribution) Stop() {
	d.once.Do(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
}
