package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/voidbox/voidbox/internal/textfmt"
)

// qmpReply is one line QEMU sends on the QMP socket: a greeting, an event,
// a command's return value or its error.
type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// decodeQMP parses one QMP line. QEMU is trusted more than the guest, but a
// confused or hostile peer on the socket must produce an error, not a panic.
func decodeQMP(line []byte) (qmpReply, error) {
	var r qmpReply
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("qmp: bad message %q: %w", textfmt.Clip(string(line), 200, "..."), err)
	}
	return r, nil
}

// qmpCommand connects to the QMP socket, negotiates capabilities and runs
// one command, returning its "return" value. QEMU accepts one QMP client at
// a time, so each call uses a fresh connection.
func qmpCommand(ctx context.Context, sock, command string, args any) (ret json.RawMessage, err error) {
	err = qmpSession(ctx, sock, func(q *qmpConn) error {
		ret, err = q.run(command, args, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	return ret, nil
}

// qmpSession connects to the QMP socket, negotiates capabilities and runs f on
// the connection (bounded by ctx, and by 5 s when ctx has no earlier deadline).
func qmpSession(ctx context.Context, sock string, f func(*qmpConn) error) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rd := bufio.NewReader(conn)
	greeting, err := readQMP(rd)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if greeting.QMP == nil {
		return fmt.Errorf("first message is not a QMP greeting")
	}
	if _, err := qmpExchange(conn, rd, "qmp_capabilities", nil); err != nil {
		return err
	}
	return f(&qmpConn{conn: conn, rd: rd})
}

func qmpExchange(conn io.Writer, rd *bufio.Reader, command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(msg, '\n')); err != nil {
		return nil, fmt.Errorf("send %s: %w", command, err)
	}
	for {
		r, err := readQMP(rd)
		if err != nil {
			return nil, fmt.Errorf("await %s reply: %w", command, err)
		}
		switch {
		case r.Event != "":
			continue // asynchronous events (SHUTDOWN, ...) interleave with replies
		case r.Error != nil:
			return nil, fmt.Errorf("%s: %s: %s", command, r.Error.Class, r.Error.Desc)
		case r.Return != nil:
			return r.Return, nil
		}
	}
}

func readQMP(rd *bufio.Reader) (qmpReply, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return qmpReply{}, err
	}
	return decodeQMP(line)
}

// Status is the VM run state from QMP query-status ("running", "shutdown",
// "internal-error", "guest-panicked", ...).
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
