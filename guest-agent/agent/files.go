package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// resolveFlags keep every lookup under the root: absolute symlinks and ".." that
// would leave it fail with EXDEV, and /proc magic links are refused.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// confine maps a request path to (root, path relative to root). Relative paths are
// taken relative to Roots[0]. ".." is refused outright rather than cleaned away, so
// a path never means something other than what it says.
func (s *Server) confine(p string) (string, string, error) {
	if p == "" || strings.IndexByte(p, 0) >= 0 || len(p) > 4096 {
		return "", "", remote(proto.CodeBadPath, "path %q is empty, too long or contains NUL", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", "", remote(proto.CodeBadPath, "path %q contains \"..\": use a path inside %v", p, s.opts.Roots)
		}
	}
	if !path.IsAbs(p) {
		p = path.Join(s.opts.Roots[0], p)
	}
	p = path.Clean(p)
	for _, r := range s.opts.Roots {
		if p == r {
			return r, ".", nil
		}
		if rel, ok := strings.CutPrefix(p, r+"/"); ok {
			return r, rel, nil
		}
	}
	return "", "", remote(proto.CodeBadPath, "path %q is outside the allowed roots %v", p, s.opts.Roots)
}

// openBeneath opens rel under root without leaving it.
func openBeneath(root, rel string, flags int, mode uint32) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	defer unix.Close(rfd)
	for {
		fd, err := unix.Openat2(rfd, rel, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode), Resolve: resolveFlags})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // EAGAIN: a concurrent rename raced the lookup; retry
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: filepath.Join(root, rel), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(root, rel)), nil
	}
}

// pathErr classifies a file-operation failure for the host.
func pathErr(op, p string, err error) error {
	switch {
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.ELOOP):
		return remote(proto.CodeBadPath, "%s %q: the path leaves the allowed roots through a symlink", op, p)
	case errors.Is(err, os.ErrNotExist):
		return remote(proto.CodeNotFound, "%s %q: no such file or directory", op, p)
	case errors.Is(err, os.ErrExist):
		return remote(proto.CodeExists, "%s %q: already exists", op, p)
	}
	var re *proto.RemoteError
	if errors.As(err, &re) {
		return err
	}
	return remote(proto.CodeIO, "%s %q: %v", op, p, err)
}

func (s *Server) chown(f *os.File) error {
	if s.opts.Unconfined {
		return nil
	}
	return f.Chown(s.opts.UID, s.opts.GID)
}

func (s *Server) stat(p string) (*proto.FileInfo, error) {
	root, rel, err := s.confine(p)
	if err != nil {
		return nil, err
	}
	f, err := openBeneath(root, rel, unix.O_PATH, 0)
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	return &proto.FileInfo{Name: path.Base(p), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}, nil
}

// mkdirAll creates rel and its missing parents under root, owned by the stage user.
func (s *Server) mkdirAll(root, rel string, mode uint32) error {
	if rel == "." {
		return nil
	}
	cur := "."
	for _, el := range strings.Split(rel, "/") {
		if el == "" || el == "." {
			continue
		}
		parent := cur
		cur = path.Join(cur, el)
		d, err := openBeneath(root, cur, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err == nil {
			d.Close()
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		pd, err := openBeneath(root, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(pd.Fd()), el, mode)
		pd.Close()
		if err != nil && err != unix.EEXIST {
			return &os.PathError{Op: "mkdir", Path: path.Join(root, cur), Err: err}
		}
		d, err = openBeneath(root, cur, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = s.chown(d)
		d.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) mkdir(p string, mode uint32) error {
	root, rel, err := s.confine(p)
	if err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o755
	}
	if err := s.mkdirAll(root, rel, mode&0o7777); err != nil {
		return pathErr("mkdir", p, err)
	}
	return nil
}

// writeFile receives the file content frames and installs the file atomically
// (temporary file in the same directory, then rename), owned by the stage user.
func (s *Server) writeFile(st io.Reader, req proto.Request) error {
	root, rel, err := s.confine(req.Path)
	if err != nil {
		return err
	}
	if rel == "." {
		return remote(proto.CodeBadPath, "write %q: the path is an allowed root, not a file", req.Path)
	}
	mode := req.Mode & 0o7777
	if mode == 0 {
		mode = 0o644
	}
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	if err := s.mkdirAll(root, dir, 0o755); err != nil {
		return pathErr("write", req.Path, err)
	}
	pd, err := openBeneath(root, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathErr("write", req.Path, err)
	}
	defer pd.Close()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".voidbox-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(int(pd.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return pathErr("write", req.Path, err)
	}
	f := os.NewFile(uintptr(fd), path.Join(root, dir, tmp))
	installed := false
	defer func() {
		f.Close()
		if !installed {
			_ = unix.Unlinkat(int(pd.Fd()), tmp, 0)
		}
	}()
	var n int64
	for {
		fr, err := proto.ReadFrame(st)
		if err != nil {
			return fmt.Errorf("write %q: receive content: %w", req.Path, err)
		}
		if fr.Type == proto.FrameEnd {
			break
		}
		if fr.Type != proto.FrameData {
			return remote(proto.CodeBadRequest, "write %q: unexpected %s frame in file content", req.Path, fr.Type)
		}
		n += int64(len(fr.Payload))
		if n > req.Size {
			return remote(proto.CodeTooLarge, "write %q: content exceeds the announced %d bytes", req.Path, req.Size)
		}
		if _, err := f.Write(fr.Payload); err != nil {
			return pathErr("write", req.Path, err)
		}
	}
	if n != req.Size {
		return remote(proto.CodeBadRequest, "write %q: got %d bytes, %d announced", req.Path, n, req.Size)
	}
	if err := s.chown(f); err != nil {
		return pathErr("write", req.Path, err)
	}
	if err := f.Chmod(os.FileMode(mode).Perm() | fileModeBits(mode)); err != nil {
		return pathErr("write", req.Path, err)
	}
	if err := unix.Renameat(int(pd.Fd()), tmp, int(pd.Fd()), base); err != nil {
		return pathErr("write", req.Path, err)
	}
	installed = true
	return nil
}

// fileModeBits converts setuid/setgid/sticky bits from unix to fs.FileMode form.
func fileModeBits(m uint32) os.FileMode {
	var out os.FileMode
	if m&unix.S_ISUID != 0 {
		out |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= os.ModeSticky
	}
	return out
}

// readFile streams a regular file's content as data frames.
func (s *Server) readFile(st io.Writer, req proto.Request) {
	root, rel, err := s.confine(req.Path)
	if err != nil {
		sendError(st, err)
		return
	}
	// O_NONBLOCK: a FIFO planted by a stage must not hang the agent.
	f, err := openBeneath(root, rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		sendError(st, pathErr("read", req.Path, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		sendError(st, pathErr("read", req.Path, err))
		return
	}
	if !fi.Mode().IsRegular() {
		sendErr(st, proto.CodeBadPath, fmt.Sprintf("read %q: not a regular file (%s)", req.Path, fi.Mode().Type()))
		return
	}
	if fi.Size() > proto.MaxFileSize {
		sendErr(st, proto.CodeTooLarge, fmt.Sprintf("read %q: file is %d bytes, at most %d can be read", req.Path, fi.Size(), proto.MaxFileSize))
		return
	}
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			total += int64(n)
			if total > proto.MaxFileSize {
				sendErr(st, proto.CodeTooLarge, fmt.Sprintf("read %q: file grew past %d bytes", req.Path, proto.MaxFileSize))
				return
			}
			if proto.WriteFrame(st, proto.FrameData, buf[:n]) != nil {
				return
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			sendError(st, pathErr("read", req.Path, err))
			return
		}
	}
	_ = proto.WriteJSON(st, proto.FrameOK, proto.Response{})
}
