package chv

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"testing"

	"github.com/voidbox/voidbox/chv/internal/fakechv"
)

// fakeModeEnv turns the test binary into a fake cloud-hypervisor process, so
// the driver manages a real process and a real API socket. Modes:
//
//	normal               serve the API; the agent answers on port 1024 (echo)
//	never-listen         never create the API socket
//	exit-at-start        print a KVM error and exit 1, as without /dev/kvm
//	ping-fails           vmm.ping answers 500
//	create-rejected      vm.create answers 400 with an error chain
//	boot-fails           vm.boot answers 500
//	crash-after-boot     exit 1 shortly after vm.boot, no agent
//	poweroff-after-boot  the guest powers off shortly after boot: exit 0
//	ignore-vmm-shutdown  answer vmm.shutdown but keep running
//	agent-late           the agent starts listening 400ms after boot
const fakeModeEnv = "VOIDBOX_FAKECHV_MODE"

// violationMark prefixes a contract violation the fake process saw; the
// tests fail when vmm.log contains it.
const violationMark = "FAKECHV-VIOLATION: "

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeModeEnv); mode != "" {
		os.Exit(fakeVMM(mode, os.Args[1:]))
	}
	// Nearly every test here runs against the schema: without it, say once
	// what to do instead of failing each test with the same message. The
	// fake processes get the location explicitly, whatever their directory.
	p, err := fakechv.FindSpec()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: chv tests:", err)
		os.Exit(1)
	}
	os.Setenv(fakechv.SpecEnv, p)
	os.Exit(m.Run())
}

// argValue finds "--flag path=X" in a cloud-hypervisor command line.
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return strings.TrimPrefix(args[i+1], "path=")
		}
	}
	return ""
}

func fakeVMM(mode string, args []string) int {
	if len(args) == 1 && args[0] == "--version" {
		// cloud-hypervisor/src/main.rs: the binary's name and BUILD_VERSION, then
		// the migration protocol versions.
		fmt.Println("cloud-hypervisor v53.0-fake")
		fmt.Println("Migration Protocol Versions: 1.0")
		return 0
	}
	api := argValue(args, "--api-socket")
	if api == "" {
		fmt.Fprintln(os.Stderr, "fake cloud-hypervisor: no --api-socket path=")
		return 2
	}
	switch mode {
	case "exit-at-start":
		fmt.Fprintln(os.Stderr, "Error booting VM: Failed to open /dev/kvm: No such file or directory (os error 2)")
		return 1
	case "never-listen":
		time.Sleep(time.Hour)
		return 1
	}
	path, err := fakechv.FindSpec()
	if err != nil {
		fmt.Fprintln(os.Stderr, violationMark+err.Error())
		return 3
	}
	doc, err := fakechv.LoadSpec(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, violationMark+err.Error())
		return 3
	}
	srv, err := fakechv.New(doc, func(err error) { fmt.Fprintln(os.Stderr, violationMark+err.Error()) })
	if err != nil {
		fmt.Fprintln(os.Stderr, violationMark+err.Error())
		return 3
	}
	switch mode {
	case "ping-fails":
		srv.PingError = []string{"Error from API", "API request send error"}
	case "create-rejected":
		srv.CreateError = []string{"Error from API", "The VM could not be created", "Error validating configuration", "Invalid kernel path"}
	case "boot-fails":
		srv.BootError = []string{"Error from API", "The VM could not boot", "Cannot load the kernel into memory"}
	}
	srv.OnVMMShutdown = func() {
		if mode != "ignore-vmm-shutdown" {
			os.Exit(0)
		}
	}
	srv.OnBoot = func(raw json.RawMessage) { fakeGuest(mode, srv, raw) }
	restored := &fakeRestored{}
	srv.OnRestore, srv.OnResume = restored.restore, restored.resume
	os.Remove(api)
	l, err := net.Listen("unix", api)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	http.Serve(l, srv)
	return 0
}

// fakeGuest plays the guest after vm.boot: it writes to the serial file and
// runs the agent (an echo server) behind the hybrid-vsock socket.
func fakeGuest(mode string, srv *fakechv.Server, raw json.RawMessage) {
	var cfg struct {
		Serial struct{ File string }
		Vsock  struct{ Socket string }
	}
	json.Unmarshal(raw, &cfg)
	os.WriteFile(cfg.Serial.File, []byte("[    0.000000] Linux version fake\nfake guest booted\n"), 0o600)
	mux := fakechv.NewMuxer()
	switch mode {
	case "console-flood":
		mux.Handle(AgentPort, echo)
		go func() {
			f, err := os.OpenFile(cfg.Serial.File, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return
			}
			line := []byte(strings.Repeat("flood ", 20) + "\n")
			for {
				if _, err := f.Write(line); err != nil {
					return
				}
			}
		}()
	case "crash-after-boot":
		go func() {
			time.Sleep(300 * time.Millisecond)
			fmt.Fprintln(os.Stderr, "thread 'vcpu0' panicked at fake crash")
			os.Exit(1)
		}()
	case "poweroff-after-boot":
		mux.Handle(AgentPort, echo)
		go func() {
			time.Sleep(300 * time.Millisecond)
			srv.PowerOff()
			os.Exit(0)
		}()
	case "agent-late":
		go func() {
			time.Sleep(400 * time.Millisecond)
			mux.Handle(AgentPort, echo)
		}()
	default:
		mux.Handle(AgentPort, echo)
	}
	l, err := net.Listen("unix", cfg.Vsock.Socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, violationMark+"vsock socket: "+err.Error())
		return
	}
	go mux.Serve(l)
}

// echo is the fake guest agent: it sends back what it reads.
func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// fakeRestored plays the VM a vm.restore builds from its config.json: its serial
// file is created anew and its vsock socket bound (one in use fails the restore, as
// the real bind would); its agent answers once vm.resume ran.
type fakeRestored struct {
	mux     *fakechv.Muxer
	console string
}

func (r *fakeRestored) restore(raw json.RawMessage) error {
	var cfg struct {
		Serial struct{ File string }
		Vsock  struct{ Socket string }
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.Serial.File, []byte("fake guest restored\n"), 0o600); err != nil {
		return err
	}
	l, err := net.Listen("unix", cfg.Vsock.Socket)
	if err != nil {
		return err
	}
	r.mux, r.console = fakechv.NewMuxer(), cfg.Serial.File
	go r.mux.Serve(l)
	return nil
}

func (r *fakeRestored) resume() {
	if r.mux == nil {
		return // a booted VM resumed after a pause: its guest runs on
	}
	r.mux.Handle(AgentPort, echo)
	if f, err := os.OpenFile(r.console, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		f.WriteString("fake guest resumed\n")
		f.Close()
	}
}
