package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/voidbox/voidbox/oci/unpack"
)

// BuildExt4 makes out, an ext4 image of the tree at root with the tree's own
// owners and modes: for trees made by other means than an image's layers,
// such as a debootstrap run as root. id names the file system: its sha256
// gives the UUID, so building the same id again gives the same identity.
// It needs e2fsprogs (mkfs.ext4, debugfs); errors say so.
func BuildExt4(ctx context.Context, root, out, id string) error {
	attrs := map[uint64]unpack.Attr{}
	err := walkStat(root, func(_ string, st *syscall.Stat_t) error {
		attrs[st.Ino] = unpack.Attr{UID: int(st.Uid), GID: int(st.Gid), Mode: st.Mode}
		return nil
	})
	if err != nil {
		return fmt.Errorf("oci: ext4 image of %s: %w", root, err)
	}
	sum := sha256.Sum256([]byte(id))
	if err := buildExt4(ctx, root, out, attrs, "sha256:"+hex.EncodeToString(sum[:])); err != nil {
		return fmt.Errorf("oci: ext4 image of %s: %w", root, err)
	}
	return nil
}

// walkStat calls fn with the path and stat data of every entry of the tree
// at root, root included (symbolic links themselves, not their targets).
func walkStat(root string, fn func(p string, st *syscall.Stat_t) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		return fn(p, st)
	})
}
