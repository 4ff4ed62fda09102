package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ScriptEnv is the environment variable through which the CLI names a script file for
// `--sandbox mock`.
const ScriptEnv = "VOIDBOX_MOCK_SCRIPT"

// replyJSON is Reply's file form: snake_case names and a duration string for delay.
// exit_code is a pointer so that a reply giving it beside signal or err is caught.
type replyJSON struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode *int   `json:"exit_code"`
	Signal   string `json:"signal"`
	Delay    string `json:"delay"`
	Err      string `json:"err"`
}

// LoadScript reads a script file:
//
//	{"stage": [{"stdout": "...", "stderr": "...", "exit_code": 1, "delay": "2s"}, ...]}
//
// A reply ends its "process" one way: it exits (exit_code, default 0), a signal kills
// it ("signal": "SIGKILL"), or the sandbox itself fails ("err": "..."); giving two of
// these is an error. Decoding is strict (unknown fields, trailing data and empty reply
// lists are errors) and every error names the file, the stage and the reply at fault.
func LoadScript(path string) (Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mock script: %w", err)
	}
	s, err := ParseScript(data)
	if err != nil {
		return nil, fmt.Errorf("mock script %s: %w", path, err)
	}
	return s, nil
}

// ParseScript decodes a script document; see LoadScript for the format.
func ParseScript(data []byte) (Script, error) {
	var raw map[string][]json.RawMessage
	if err := decodeStrict(data, &raw); err != nil {
		return nil, fmt.Errorf(`want an object {"stage name": [reply, ...]}: %w`, err)
	}
	if raw == nil {
		return nil, errors.New(`want an object {"stage name": [reply, ...]}, got null`)
	}
	s := Script{}
	for name, replies := range raw {
		if name == "" {
			return nil, errors.New("empty stage name; keys are the names given to box(name=...)")
		}
		if len(replies) == 0 {
			return nil, fmt.Errorf("stage %q: empty reply list; give at least one reply (the last one repeats)", name)
		}
		for i, m := range replies {
			r, err := parseReply(m)
			if err != nil {
				return nil, fmt.Errorf("stage %q reply %d: %w", name, i+1, err)
			}
			s[name] = append(s[name], r)
		}
	}
	return s, nil
}

func parseReply(m json.RawMessage) (Reply, error) {
	if bytes.Equal(bytes.TrimSpace(m), []byte("null")) {
		return Reply{}, errors.New("want an object, got null")
	}
	var j replyJSON
	if err := decodeStrict(m, &j); err != nil {
		return Reply{}, err
	}
	r := Reply{Stdout: j.Stdout, Stderr: j.Stderr, Signal: j.Signal, Err: j.Err}
	if j.ExitCode != nil {
		r.ExitCode = *j.ExitCode
	}
	if err := checkEnding(j); err != nil {
		return Reply{}, err
	}
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			return Reply{}, fmt.Errorf(`field "delay": %q is not a duration; want e.g. "250ms" or "2s"`, j.Delay)
		}
		if d < 0 {
			return Reply{}, fmt.Errorf(`field "delay": %q is negative; want a duration >= 0`, j.Delay)
		}
		r.Delay = d
	}
	return r, nil
}

// checkEnding refuses a reply that ends its process two ways, and a signal that is
// not one: a process that exited was not killed, and one that never ran (err) did
// neither.
func checkEnding(j replyJSON) error {
	var given []string
	if j.ExitCode != nil {
		given = append(given, `"exit_code"`)
	}
	if j.Signal != "" {
		given = append(given, `"signal"`)
		if unix.SignalNum(j.Signal) == 0 {
			return fmt.Errorf(`field "signal": %q is not a signal name; want one like "SIGKILL" or "SIGTERM"`, j.Signal)
		}
	}
	if j.Err != "" {
		given = append(given, `"err"`)
	}
	if len(given) > 1 {
		return fmt.Errorf("fields %s: give at most one; a reply exits (exit_code), is killed (signal) or fails in the sandbox (err)", strings.Join(given, " and "))
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
