package starlark

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bazelbuild/buildtools/build"
)

// Format returns src in canonical layout (buildifier's printer for generic Starlark files,
// which keeps statement order and does not sort lists). filename appears in parse errors.
func Format(src []byte, filename string) ([]byte, error) {
	f, err := build.ParseDefault(filename, src)
	if err != nil {
		return nil, fmt.Errorf("format %s: %w", filename, err)
	}
	return build.Format(f), nil
}

// FormatFiles formats each file in place and returns the files whose content changed.
// With check, nothing is written: the files that would change are listed on stdout, one
// per line, and returned (callers exit non-zero when the list is not empty). A file that
// cannot be read or parsed stops the run with an error naming it.
func FormatFiles(paths []string, check bool, stdout io.Writer) (changed []string, err error) {
	for _, p := range paths {
		src, err := readFileBounded(p)
		if err != nil {
			return changed, err
		}
		out, err := Format(src, p)
		if err != nil {
			return changed, err
		}
		if bytes.Equal(src, out) {
			continue
		}
		changed = append(changed, p)
		if check {
			fmt.Fprintln(stdout, p)
			continue
		}
		if err := replaceFile(p, out); err != nil {
			return changed, fmt.Errorf("format %s: %w", p, err)
		}
	}
	return changed, nil
}

// replaceFile writes data next to p and renames it over p, so an interrupted fmt never
// leaves a half-written program behind. The file keeps its permission bits.
func replaceFile(p string, data []byte) error {
	info, err := os.Stat(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
