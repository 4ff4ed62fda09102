package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Reaper collects every exited child of this process. As PID 1 the agent inherits all
// orphans and must reap them, and a wait4(-1) loop would steal exit statuses from
// os.Process.Wait; so with a Reaper the server starts processes through Start and gets
// their status from the Reaper instead.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
	strays  int
	stop    chan struct{}
	sig     chan os.Signal
}

// NewReaper starts reaping on SIGCHLD (and on a slow timer, in case a signal was
// coalesced while a sweep was running). The agent keeps it for the life of the VM.
func NewReaper() *Reaper {
	r := &Reaper{waiters: map[int]chan syscall.WaitStatus{}, stop: make(chan struct{}), sig: make(chan os.Signal, 1)}
	signal.Notify(r.sig, syscall.SIGCHLD)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-r.sig:
			case <-tick.C:
			case <-r.stop:
				return
			}
			r.sweep()
		}
	}()
	return r
}

// Close stops reaping (tests: a process that is not PID 1 goes back to waiting for
// its own children).
func (r *Reaper) Close() {
	signal.Stop(r.sig)
	close(r.stop)
}

// Start runs start (which must create exactly one child and return its pid) and
// registers the child before any sweep can reap it.
func (r *Reaper) Start(start func() (int, error)) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// Strays reports how many orphans (children nobody waited for) were reaped.
func (r *Reaper) Strays() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.strays
}

func (r *Reaper) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			ch <- ws
			delete(r.waiters, pid)
		} else {
			r.strays++
		}
	}
}
