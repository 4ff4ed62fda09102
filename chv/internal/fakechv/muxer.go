package fakechv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Muxer plays Cloud Hypervisor's side of hybrid vsock: on its unix socket it
// reads "CONNECT <port>\n", answers "OK <hostport>\n" and hands the connection
// to the handler of that guest port; a port without a handler is refused by
// closing the connection, as the real VMM does.
type Muxer struct {
	mu       sync.Mutex
	handlers map[uint32]func(net.Conn)
	next     uint32
	wg       sync.WaitGroup
}

// NewMuxer returns a muxer with no ports open.
func NewMuxer() *Muxer {
	return &Muxer{handlers: map[uint32]func(net.Conn){}, next: 1 << 30}
}

// Handle makes guest port answer; h owns the connection it gets.
func (m *Muxer) Handle(port uint32, h func(net.Conn)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handlers[port] = h
}

// Serve accepts connections until l is closed, then waits for handlers.
func (m *Muxer) Serve(l net.Listener) error {
	defer m.wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.serveConn(c)
		}()
	}
}

func (m *Muxer) serveConn(c net.Conn) {
	line, err := readLine(c, 64)
	if err != nil {
		c.Close()
		return
	}
	port, err := ParseConnect(line)
	m.mu.Lock()
	h := m.handlers[port]
	m.next++
	hostPort := m.next
	m.mu.Unlock()
	if err != nil || h == nil {
		c.Close()
		return
	}
	if _, err := fmt.Fprintf(c, "OK %d\n", hostPort); err != nil {
		c.Close()
		return
	}
	h(c)
}

// readLine reads up to '\n' one byte at a time, so bytes after it stay unread.
func readLine(c net.Conn, max int) (string, error) {
	var b [1]byte
	var line []byte
	for len(line) <= max {
		if _, err := c.Read(b[:]); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", max)
}

// ParseConnect parses a hybrid-vsock request line (without "\n"):
// "CONNECT <port>" with a decimal 32-bit port.
func ParseConnect(line string) (uint32, error) {
	rest, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok {
		return 0, fmt.Errorf("request %q does not start with \"CONNECT \"", line)
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("request %q: port is not a 32-bit decimal number", line)
	}
	return uint32(n), nil
}
