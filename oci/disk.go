package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/voidbox/voidbox/oci/unpack"
)

// Disk is an image's root filesystem as a read-only ext4 image.
type Disk struct {
	Path   string `json:"-"`
	Digest string `json:"digest"` // the image manifest's digest
	Size   int64  `json:"size"`
	// UID and GID are the image's User resolved with its /etc/passwd and
	// /etc/group (0:0 when the image sets none); UserError says why they
	// could not be, and then the image cannot run.
	UID       int       `json:"uid"`
	GID       int       `json:"gid"`
	UserError string    `json:"user_error,omitempty"`
	Ignored   []string  `json:"ignored,omitempty"` // device nodes and FIFOs the layers held
	Built     time.Time `json:"built"`
}

// Owner returns the uid and gid the image's processes run as.
func (d *Disk) Owner() (uid, gid int, err error) {
	if d.UserError != "" {
		return 0, 0, errors.New(d.UserError)
	}
	return d.UID, d.GID, nil
}

// diskPath is where the disk of an image (by manifest digest) is cached.
func (s *Store) diskPath(digest string) string {
	return s.path("disks", strings.TrimPrefix(digest, "sha256:")+".ext4")
}

func (s *Store) readDisk(digest string) (*Disk, error) {
	b, err := os.ReadFile(strings.TrimSuffix(s.diskPath(digest), ".ext4") + ".json")
	if err != nil {
		return nil, err
	}
	d := &Disk{Path: s.diskPath(digest)}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("oci: disk metadata of %s: %w", digest, err)
	}
	fi, err := os.Stat(d.Path)
	if err != nil {
		return nil, err
	}
	if fi.Size() != d.Size || d.Digest != digest {
		return nil, fmt.Errorf("oci: disk %s does not match its metadata", d.Path)
	}
	return d, nil
}

// Disk returns the read-only ext4 disk of img's root filesystem, building
// and caching it (per image digest) the first time. img must come from Pull.
func (s *Store) Disk(ctx context.Context, img *Image) (*Disk, error) {
	if _, err := parseDigest(img.Digest); err != nil {
		return nil, fmt.Errorf("oci: disk of %s: %w", img.Ref, err)
	}
	if img.ArtifactType != "" {
		return nil, fmt.Errorf("oci: disk of %s: %w: it is an OCI artifact of type %q, which has no root filesystem", img.Ref, ErrWrongType, img.ArtifactType)
	}
	if d, err := s.readDisk(img.Digest); err == nil {
		return d, nil
	}
	unlock, err := s.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	unlockDisk, err := flock(ctx, strings.TrimSuffix(s.diskPath(img.Digest), ".ext4")+".lock", true)
	if err != nil {
		return nil, err
	}
	defer unlockDisk()
	if d, err := s.readDisk(img.Digest); err == nil {
		return d, nil // another process built it while we waited
	}
	d, err := s.buildDisk(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("oci: disk of %s (%s): %w", img.Ref, img.Digest, err)
	}
	return d, nil
}

func (s *Store) buildDisk(ctx context.Context, img *Image) (*Disk, error) {
	if _, err := s.load(img.Ref, img.Digest); err != nil {
		return nil, fmt.Errorf("image not in the cache (pull it first): %w", err)
	}
	work, err := os.MkdirTemp(s.path("tmp"), "rootfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	var layers []unpack.Layer
	for _, l := range img.Layers {
		layers = append(layers, unpack.Layer{Digest: l.Digest, DiffID: l.DiffID,
			Open: func() (io.ReadCloser, error) { return s.openLayer(l.Digest) }})
	}
	opts := s.limits
	opts.Chown = s.chown
	res, err := unpack.Apply(ctx, root, layers, opts)
	if err != nil {
		return nil, err
	}
	d := &Disk{Digest: img.Digest, Ignored: res.Ignored, Built: s.now().UTC()}
	if d.UID, d.GID, err = resolveUser(root, img.Config.User); err != nil {
		d.UserError = err.Error()
	}
	raw := filepath.Join(work, "rootfs.ext4")
	if err := buildExt4(ctx, root, raw, res.Attrs, img.Digest); err != nil {
		return nil, err
	}
	fi, err := os.Stat(raw)
	if err != nil {
		return nil, err
	}
	d.Size = fi.Size()
	if err := os.Chmod(raw, 0o644); err != nil {
		return nil, err
	}
	d.Path = s.diskPath(img.Digest)
	if err := os.Rename(raw, d.Path); err != nil {
		return nil, err
	}
	meta, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(strings.TrimSuffix(d.Path, ".ext4")+".json", s.path("tmp"), meta); err != nil {
		return nil, err
	}
	return d, nil
}

// tool finds an e2fsprogs program: in PATH, or in /usr/sbin and /sbin,
// which an ordinary user's PATH often lacks.
func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin: install Debian's e2fsprogs package (apt-get install e2fsprogs)", name)
}

// buildExt4 makes out, an ext4 image of the tree at root, and gives its
// inodes the owners and modes of attrs (by inode number in the tree).
func buildExt4(ctx context.Context, root, out string, attrs map[uint64]unpack.Attr, digest string) error {
	mkfs, err := tool("mkfs.ext4")
	if err != nil {
		return err
	}
	debugfs, err := tool("debugfs")
	if err != nil {
		return err
	}
	size, inodes, err := estimate(root)
	if err != nil {
		return err
	}
	uuid := digestUUID(digest)
	for attempt := 1; ; attempt++ {
		os.Remove(out)
		cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
			"-N", fmt.Sprint(inodes), "-m", "0", "-O", "^has_journal,^resize_inode", "-L", "voidbox-rootfs",
			"-U", uuid, "-E", "hash_seed="+uuid, "-d", root, out, fmt.Sprintf("%dk", size/1024))
		output, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		full := bytes.Contains(output, []byte("Could not allocate")) || bytes.Contains(output, []byte("No space left"))
		if !full || attempt == 4 || ctx.Err() != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(output)))
		}
		size += size / 2 // the estimate was short: grow and try again
		inodes += inodes / 2
	}
	cmds, err := ownerCommands(root, attrs)
	if err != nil {
		return err
	}
	script := out + ".debugfs"
	if err := os.WriteFile(script, cmds, 0o600); err != nil {
		return err
	}
	defer os.Remove(script)
	cmd := exec.CommandContext(ctx, debugfs, "-w", "-f", script, out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs (setting owners and modes): %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// debugfs exits 0 whatever its commands did; anything but the version
	// banner on stderr is a failed command.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			return fmt.Errorf("debugfs (setting owners and modes): %s", strings.TrimSpace(stderr.String()))
		}
	}
	return nil
}

// estimate sizes the filesystem for the tree at root: data blocks, directory
// blocks, inode tables and a margin for metadata. buildExt4 grows it if
// mkfs still runs short.
func estimate(root string) (size int64, inodes int, err error) {
	const block = 4096
	var blocks, dirents int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		dirents += int64(8+len(d.Name())+3) &^ 3
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsRegular():
			blocks += (fi.Size() + block - 1) / block
			blocks += fi.Size() / (block * 340) // extent tree blocks of big, fragmented files
		case fi.IsDir():
			blocks++
		case fi.Mode()&fs.ModeSymlink != 0 && fi.Size() >= 60:
			blocks++ // targets of 60 bytes or more do not fit in the inode
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sizing the disk: %w", err)
	}
	inodes += inodes/10 + 64
	data := (blocks+dirents/block)*block + int64(inodes)*256
	return data + data/10 + 16<<20, inodes, nil
}

// ownerCommands lists the debugfs commands that give every inode whose
// owner or mode in the tree differs from attrs the image's. The root
// directory is always set: mkfs.ext4 -d does not copy its attributes.
func ownerCommands(root string, attrs map[uint64]unpack.Attr) ([]byte, error) {
	var b bytes.Buffer
	err := walkStat(root, func(p string, st *syscall.Stat_t) error {
		a, ok := attrs[st.Ino]
		if !ok {
			return fmt.Errorf("%s: inode %d was not made by the unpacker", p, st.Ino)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		isRoot := rel == "."
		if int(st.Uid) == a.UID && int(st.Gid) == a.GID && st.Mode == a.Mode && !isRoot {
			return nil
		}
		if strings.ContainsAny(rel, "\n\r") {
			return fmt.Errorf("%q: debugfs cannot name a file with a line break to give it owner %d:%d", rel, a.UID, a.GID)
		}
		q := `"/` + strings.ReplaceAll(rel, `"`, `""`) + `"`
		if isRoot {
			q = `"/"`
		}
		fmt.Fprintf(&b, "sif %s uid %d\nsif %s gid %d\nsif %s mode 0%o\n", q, a.UID, q, a.GID, q, a.Mode)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("owners and modes: %w", err)
	}
	return b.Bytes(), nil
}

// digestUUID derives the filesystem UUID (and directory hash seed) from the
// image digest, so a rebuilt disk has the same identity.
func digestUUID(digest string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
