package starlark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"

	"github.com/chzyer/readline"
	"github.com/voidbox/voidbox/builtins"
	sk "go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

const (
	promptFirst = ">>> "
	promptMore  = "... "
)

// HistoryFile is where the REPL keeps its history, relative to the home directory.
const HistoryFile = ".voidbox/repl_history"

// REPL reads Starlark from stdin and evaluates it with the voidbox builtins until end of
// input (Ctrl-D), which returns nil. Each input is one compound statement: a line ending
// in ':' or with open brackets continues on "... " lines until a blank line. An input that
// is a single expression prints its value unless it is None; otherwise it runs as
// statements. Globals persist between inputs; errors go to stderr and the loop goes on.
//
// Ctrl-C while a statement runs cancels it (thread.Cancel, and the context run() sees);
// Ctrl-C while typing discards the current input. When stdin is a terminal it is put in raw
// mode only while a line is being edited, so during evaluation Ctrl-C arrives as SIGINT.
// opts.Context ending stops the REPL.
func REPL(opts Options, stdin io.Reader, stdout, stderr io.Writer) error {
	if opts.Print == nil {
		opts.Print = func(_ *sk.Thread, msg string) { fmt.Fprintln(stdout, msg) }
	}
	h := newHost(opts)
	defer h.stop()

	rl, err := readline.NewEx(readlineConfig(stdin, stdout, stderr))
	if err != nil {
		return fmt.Errorf("start line editor: %w", err)
	}
	defer rl.Close()

	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	defer signal.Stop(interrupts)

	r := &repl{h: h, rl: rl, out: stdout, errOut: stderr, interrupts: interrupts,
		globals: make(sk.StringDict, len(h.predeclared))}
	// ExecREPLChunk knows no predeclared dict: the builtins start out as globals.
	for k, v := range h.predeclared {
		r.globals[k] = v
	}
	for h.ctx.Err() == nil {
		err := r.step()
		switch {
		case errors.Is(err, io.EOF):
			fmt.Fprintln(stdout)
			return nil
		case errors.Is(err, readline.ErrInterrupt):
			continue
		case err != nil:
			return err
		}
	}
	return nil
}

// readlineConfig sets up line editing on stdin; a terminal other than os.Stdin (a pty in
// tests, say) gets its own raw-mode and width functions.
func readlineConfig(stdin io.Reader, stdout, stderr io.Writer) *readline.Config {
	rc, ok := stdin.(io.ReadCloser)
	if !ok {
		rc = io.NopCloser(stdin)
	}
	cfg := &readline.Config{
		Prompt:          promptFirst,
		HistoryFile:     historyPath(),
		Stdin:           rc,
		Stdout:          stdout,
		Stderr:          stderr,
		InterruptPrompt: "^C",
		EOFPrompt:       "\n",
	}
	f, isFile := stdin.(*os.File)
	if !isFile {
		cfg.FuncIsTerminal = func() bool { return false }
		return cfg
	}
	fd := int(f.Fd())
	cfg.FuncIsTerminal = func() bool { return readline.IsTerminal(fd) }
	var saved *readline.State
	cfg.FuncMakeRaw = func() error {
		st, err := readline.MakeRaw(fd)
		if err != nil {
			return err
		}
		saved = st
		return nil
	}
	cfg.FuncExitRaw = func() error {
		if saved == nil {
			return nil
		}
		err := readline.Restore(fd, saved)
		saved = nil
		return err
	}
	cfg.FuncGetWidth = func() int {
		if w, _, err := readline.GetSize(fd); err == nil && w > 0 {
			return w
		}
		return 80
	}
	return cfg
}

// historyPath is ~/.voidbox/repl_history, or "" (no history) when it cannot be created.
func historyPath() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(home, HistoryFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return ""
	}
	return p
}

type repl struct {
	h          *host
	rl         *readline.Instance
	out        io.Writer
	errOut     io.Writer
	interrupts chan os.Signal
	globals    sk.StringDict
	// interrupted is set when Ctrl-C cancelled the current input.
	interrupted atomic.Bool
}

// step reads and evaluates one input. It returns io.EOF or readline.ErrInterrupt from the
// line editor; Starlark errors are printed, not returned.
func (r *repl) step() error {
	var readErr error
	r.rl.SetPrompt(promptFirst)
	next := func() ([]byte, error) {
		line, err := r.rl.Readline()
		r.rl.SetPrompt(promptMore)
		if err != nil {
			readErr = err
			return nil, err
		}
		return []byte(line + "\n"), nil
	}
	opts := FileOptions()
	opts.LoadBindsGlobally = true // a load() in one input serves the next ones
	f, err := opts.ParseCompoundStmt(replModule, next)
	if err != nil {
		if readErr != nil {
			return readErr
		}
		fmt.Fprintln(r.errOut, FormatError(err))
		return nil
	}
	if len(f.Stmts) == 0 {
		return nil
	}
	if err := r.eval(f); err != nil {
		if r.interrupted.Load() {
			fmt.Fprintln(r.errOut) // the terminal echoed ^C; start the message on its own line
		}
		fmt.Fprintln(r.errOut, FormatError(err))
	}
	return nil
}

// eval runs one parsed input on a fresh thread that Ctrl-C (SIGINT) cancels.
func (r *repl) eval(f *syntax.File) error {
	for len(r.interrupts) > 0 { // a Ctrl-C from before this input is not for it
		<-r.interrupts
	}
	r.interrupted.Store(false)
	ctx, cancel := context.WithCancelCause(r.h.ctx)
	defer cancel(nil)
	t := r.h.newThread("repl")
	defer r.h.release(t)
	t.SetLocal(moduleLocal, replModule)
	builtins.SetContext(t, ctx)
	go func() {
		select {
		case <-r.interrupts:
			r.interrupted.Store(true)
			cancel(errors.New("interrupted"))
			t.Cancel("interrupted")
		case <-ctx.Done():
		}
	}()

	if len(f.Stmts) == 1 {
		if stmt, ok := f.Stmts[0].(*syntax.ExprStmt); ok {
			v, err := sk.EvalExprOptions(f.Options, t, stmt.X, r.globals)
			if err != nil {
				return err
			}
			r.globals["_"] = v
			if v != sk.None {
				fmt.Fprintln(r.out, v)
			}
			return nil
		}
	}
	return sk.ExecREPLChunk(f, t, r.globals)
}
