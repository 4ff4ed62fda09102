package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	RunShimIfRequested()
	runTestHelperIfRequested()
	os.Exit(m.Run())
}

// runTestHelperIfRequested lets the test binary act as a stage program that probes
// its own confinement with raw syscalls (busybox has no way to call mount(2) alone).
func runTestHelperIfRequested() {
	switch os.Getenv("VOIDBOX_TEST_HELPER") {
	case "":
		return
	case "syscalls":
		if probeSyscalls() > 0 { // seccomp_probe_test.go
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// cloneProbe forks with raw clone flags; the child exits at once and is reaped.
func cloneProbe(flags uintptr) error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, flags, 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, err := unix.Wait4(int(pid), &ws, 0, nil)
	return err
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

type env struct {
	client *proto.Client
	srv    *Server
	ws     string
	tmp    string
	served chan error
}

// start serves opts on one end of a unix socket pair and connects a client to it.
func start(t testing.TB, opts Options) *env {
	t.Helper()
	secret, err := proto.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{served: make(chan error, 1)}
	if opts.Roots == nil {
		dir := t.TempDir()
		e.ws, e.tmp = filepath.Join(dir, "workspace"), filepath.Join(dir, "tmp")
		for _, d := range []string{e.ws, e.tmp} {
			if err := os.Mkdir(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		opts.Roots = []string{e.ws, e.tmp}
	} else {
		e.ws = opts.Roots[0]
	}
	if opts.UID == 0 && !opts.Unconfined {
		opts.UID, opts.GID = proto.DefaultUID, proto.DefaultGID
	}
	opts.Secret = secret
	e.srv, err = NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	hostConn, guestConn := socketPair(t)
	go func() { e.served <- e.srv.Serve(context.Background(), guestConn) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.client, err = proto.Connect(ctx, hostConn, secret)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		e.client.Close()
		select {
		case <-e.served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after the client closed")
		}
	})
	return e
}

func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
