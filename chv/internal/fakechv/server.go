package fakechv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// State is the VM's state as vm.info reports it; NotCreated has no VM at all.
type State string

const (
	NotCreated State = ""
	Created    State = "Created"
	Running    State = "Running"
	Shutdown   State = "Shutdown"
)

// maxBody is the real server's request body cap.
const maxBody = 4 << 20

// Server is a fake Cloud Hypervisor API. Set the knobs before serving.
type Server struct {
	// Version is what vmm.ping reports.
	Version string
	// PingError makes vmm.ping fail with 500 and this error chain.
	PingError []string
	// CreateError makes vm.create fail with 400 and this error chain (the
	// answer to a config the VMM rejects, e.g. a kernel path that does not exist).
	CreateError []string
	// BootError makes vm.boot fail with 500 and this error chain.
	BootError []string
	// OnBoot runs when vm.boot succeeds, before the answer is sent: the real
	// VMM has its devices (serial file, vsock socket) up by the time it answers.
	OnBoot func(config json.RawMessage)
	// OnVMMShutdown runs after vmm.shutdown has been answered; the real VMM
	// exits there.
	OnVMMShutdown func()
	// OnRestore runs during vm.restore once the snapshot's files were read, with
	// its config.json: it plays the VMM building the restored VM's devices (serial
	// file, vsock socket), and an error fails the restore with a 500. It runs with
	// the server locked: it must not call the Server's methods.
	OnRestore func(config json.RawMessage) error
	// OnResume runs when vm.resume succeeds, before the answer is sent.
	OnResume func()

	spec   *openapi3.T
	router routers.Router
	report func(error)

	mu     sync.Mutex
	state  State
	config json.RawMessage
	calls  []string
}

// New returns a server that checks traffic against doc and hands every
// violation (a request the real schema rejects, a response it does not
// describe, an error body that is not a JSON array of strings) to report.
func New(doc *openapi3.T, report func(error)) (*Server, error) {
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("fakechv: router: %w", err)
	}
	return &Server{Version: "v53.0-fake", spec: doc, router: r, report: report}, nil
}

// State returns the VM's state.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Config returns the body of the accepted vm.create, or nil.
func (s *Server) Config() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.config
}

// Calls lists the requests served so far, e.g. "PUT /vm.create".
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// PowerOff is the guest powering itself off: the VM leaves Running. (The real
// VMM process then exits; the process-level fake does that.)
func (s *Server) PowerOff() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == Running {
		s.state = Shutdown
	}
}

type reply struct {
	status int
	body   []byte
	before func() // runs just before the reply is sent
	after  func() // runs once the reply is on the wire
}

func errReply(status int, chain ...string) reply {
	b, _ := json.Marshal(chain)
	return reply{status: status, body: b}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		s.write(w, errReply(http.StatusBadRequest, "Bad Request"))
		return
	}
	endpoint, ok := strings.CutPrefix(r.URL.Path, "/api/v1")
	s.mu.Lock()
	s.calls = append(s.calls, r.Method+" "+endpoint)
	s.mu.Unlock()
	if !ok || s.router == nil {
		s.write(w, errReply(http.StatusNotFound, "Not Found"))
		return
	}
	// Route against the spec's server URL whatever Host the client used.
	vreq := r.Clone(r.Context())
	vreq.URL.Scheme, vreq.URL.Host, vreq.Host = "http", "localhost", "localhost"
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, _, rerr := s.router.FindRoute(vreq)
	if rerr != nil {
		switch {
		case !s.knownPath(endpoint):
			s.write(w, errReply(http.StatusNotFound, "Not Found"))
		case r.Method != http.MethodGet && r.Method != http.MethodPut:
			// The real server answers other methods with an empty 400.
			s.write(w, reply{status: http.StatusBadRequest})
		default:
			s.write(w, errReply(http.StatusBadRequest, "Bad Request"))
		}
		return
	}
	// Defaults are not filled in: the literal schema marks fields such as
	// fs.num_queues required, and the driver must send them.
	in := &openapi3filter.RequestValidationInput{Request: vreq, Route: route,
		Options: &openapi3filter.Options{SkipSettingDefaults: true}}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		s.report(fmt.Errorf("fakechv: %s %s: request rejected by the OpenAPI schema: %w", r.Method, endpoint, err))
		s.write(w, errReply(http.StatusBadRequest, "Failed to deserialize JSON", err.Error()))
		return
	}
	rep := s.dispatch(r.Method+" "+endpoint, body)
	s.checkResponse(r.Context(), in, endpoint, rep)
	if rep.before != nil {
		rep.before()
	}
	s.write(w, rep)
	if rep.after != nil {
		rep.after()
	}
}

func (s *Server) knownPath(endpoint string) bool {
	return s.spec != nil && endpoint != "" && s.spec.Paths.Find(endpoint) != nil
}

func (s *Server) write(w http.ResponseWriter, rep reply) {
	if rep.body != nil {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Server", "Cloud Hypervisor API")
	w.WriteHeader(rep.status)
	w.Write(rep.body)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// checkResponse holds our own answers to the same contract as the driver's
// requests: a fake that answers what the real server cannot would prove nothing.
func (s *Server) checkResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, endpoint string, rep reply) {
	h := http.Header{}
	if rep.body != nil {
		h.Set("Content-Type", "application/json")
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rep.status,
		Header:                 h,
		Body:                   io.NopCloser(bytes.NewReader(rep.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: false},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		s.report(fmt.Errorf("fakechv: %s: response %d rejected by the OpenAPI schema: %w", endpoint, rep.status, err))
	}
	if rep.status >= 400 && rep.body != nil {
		var chain []string
		if err := json.Unmarshal(rep.body, &chain); err != nil {
			s.report(fmt.Errorf("fakechv: %s: error body %q is not a JSON array of strings", endpoint, rep.body))
		}
	}
}

// dispatch is the VMM's state machine. Status codes follow the real server:
// 404 when there is no VM, 500 for a second create or boot, for shutting
// down a VM that is not running, and for a pause, resume, snapshot or restore
// out of order (snapshot.go).
func (s *Server) dispatch(call string, body []byte) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch call {
	case "GET /vmm.ping":
		if s.PingError != nil {
			return errReply(http.StatusInternalServerError, s.PingError...)
		}
		b, _ := json.Marshal(map[string]any{"version": s.Version, "build_version": s.Version, "pid": 4242, "features": []string{"kvm"}})
		return reply{status: http.StatusOK, body: b}
	case "PUT /vmm.shutdown":
		return reply{status: http.StatusNoContent, after: s.OnVMMShutdown}
	case "PUT /vm.create":
		switch {
		case s.state != NotCreated:
			return errReply(http.StatusInternalServerError, "Error from API", "The VM could not be created", "VM is already created")
		case s.CreateError != nil:
			return errReply(http.StatusBadRequest, s.CreateError...)
		}
		s.state, s.config = Created, json.RawMessage(bytes.Clone(body))
		return reply{status: http.StatusNoContent}
	case "PUT /vm.boot":
		switch {
		case s.state == NotCreated:
			return errReply(http.StatusNotFound, "Error from API", "The VM could not boot", "VM is not created")
		case s.state == Running:
			return errReply(http.StatusInternalServerError, "Error from API", "The VM could not boot", "VM is already running")
		case s.BootError != nil:
			return errReply(http.StatusInternalServerError, s.BootError...)
		}
		s.state = Running
		cfg, hook := s.config, s.OnBoot
		rep := reply{status: http.StatusNoContent}
		if hook != nil {
			rep.before = func() { hook(cfg) }
		}
		return rep
	case "GET /vm.info":
		if s.state == NotCreated {
			return errReply(http.StatusNotFound, "Error from API", "The VM info is not available", "VM is not created")
		}
		b, _ := json.Marshal(map[string]any{"config": s.config, "state": s.state, "memory_actual_size": 0})
		return reply{status: http.StatusOK, body: b}
	case "PUT /vm.shutdown":
		switch s.state {
		case NotCreated:
			return errReply(http.StatusNotFound, "Error from API", "The VM could not shutdown", "VM is not created")
		case Running, Paused:
			s.state = Shutdown
			return reply{status: http.StatusNoContent}
		default:
			return errReply(http.StatusInternalServerError, "Error from API", "The VM could not shutdown", "VM is not running")
		}
	case "PUT /vm.pause":
		return s.pause()
	case "PUT /vm.resume":
		return s.resume()
	case "PUT /vm.snapshot":
		return s.snapshot(body)
	case "PUT /vm.restore":
		return s.restore(body)
	}
	return errReply(http.StatusInternalServerError, "Error from API", "fakechv does not implement "+call)
}
