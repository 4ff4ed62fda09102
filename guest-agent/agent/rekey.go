package agent

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/voidbox/voidbox/guest-agent/proto"
	"golang.org/x/sys/unix"
)

// sessionSecret returns the secret conn's handshake must prove. A warm agent
// (Options.Warm: booted to be snapshotted) first takes the host's re-key on conn,
// authenticated with the snapshot's secret: it applies it (entropy, clock, hostname)
// and from then on knows only the new secret, so nothing that held the snapshot's can
// open a session. Only one re-key is ever taken.
func (s *Server) sessionSecret(conn io.ReadWriter) (string, error) {
	if !s.opts.Warm {
		return s.opts.Secret, nil
	}
	s.rekeyMu.Lock()
	defer s.rekeyMu.Unlock()
	if s.rekeyed {
		return s.opts.Secret, nil
	}
	if !s.idleLogged {
		// The host waits for this line to take the snapshot.
		s.opts.Logf("%s", proto.WarmIdleMarker)
		s.idleLogged = true
	}
	r, err := proto.ServerRekey(conn, s.opts.Secret)
	if err != nil {
		return "", err
	}
	apply := s.opts.ApplyRekey
	if apply == nil {
		apply = ApplyRekey
	}
	if err := apply(r); err != nil {
		return "", fmt.Errorf("apply the re-key: %w", err)
	}
	s.opts.Secret, s.opts.Allow, s.opts.Debug = r.Secret, r.Allow, r.Debug
	s.rekeyed = true
	s.opts.Logf("re-keyed after restore: new session secret, %d bytes of entropy, clock set to %s, hostname %q",
		len(r.Entropy), time.Unix(0, r.UnixNano).UTC().Format(time.RFC3339Nano), r.Hostname)
	return r.Secret, nil
}

// ApplyRekey makes this guest unique after a restore: it mixes the host's entropy into
// the kernel's input pool (RNDADDENTROPY, crediting it) and reseeds the CRNG from it
// (RNDRESEEDCRNG): without the reseed every VM restored from one snapshot would go on
// producing the same /dev/urandom bytes until the kernel's next scheduled reseed. Then
// it sets the wall clock (stopped while the snapshot sat on disk) and the hostname.
// Both ioctls need CAP_SYS_ADMIN, which PID 1 has.
func ApplyRekey(r proto.Rekey) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(r.Entropy)+3)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(r.Entropy)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(r.Entropy)))
	copy(info[8:], r.Entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY (%d bytes) on /dev/urandom: %w", len(r.Entropy), e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG on /dev/urandom: %w", e)
	}
	ts := unix.NsecToTimespec(r.UnixNano)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set the clock to %s: %w", time.Unix(0, r.UnixNano).UTC().Format(time.RFC3339), err)
	}
	if r.Hostname != "" {
		if err := unix.Sethostname([]byte(r.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", r.Hostname, err)
		}
	}
	return nil
}
