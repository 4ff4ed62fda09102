package oci

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// maxUserDB bounds how much of /etc/passwd or /etc/group is read.
const maxUserDB = 4 << 20

// resolveUser turns an image's User ("", "name", "uid", "name:group",
// "uid:gid", ...) into numbers with the image's own /etc/passwd and
// /etc/group, as container runtimes do: a user without a group gets its
// passwd group (0 for a uid that passwd does not list).
func resolveUser(root, user string) (uid, gid int, err error) {
	if user == "" {
		return 0, 0, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	if u == "" || (hasGroup && g == "") {
		return 0, 0, fmt.Errorf("image user %q: want user, uid, user:group or uid:gid", user)
	}
	if n, ok := parseID(u); ok {
		uid = n
		if e, found, err := lookup(root, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[2] == u }); err != nil {
			return 0, 0, fmt.Errorf("image user %q: %w", user, err)
		} else if found {
			gid, _ = parseID(e[3])
		}
	} else {
		e, found, err := lookup(root, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[0] == u })
		if err != nil {
			return 0, 0, fmt.Errorf("image user %q: %w", user, err)
		}
		if !found {
			return 0, 0, fmt.Errorf("image user %q: no user %q in the image's /etc/passwd", user, u)
		}
		var ok1, ok2 bool
		uid, ok1 = parseID(e[2])
		gid, ok2 = parseID(e[3])
		if !ok1 || !ok2 {
			return 0, 0, fmt.Errorf("image user %q: bad /etc/passwd entry %q", user, strings.Join(e, ":"))
		}
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if n, ok := parseID(g); ok {
		return uid, n, nil
	}
	e, found, err := lookup(root, "etc/group", func(f []string) bool { return len(f) > 2 && f[0] == g })
	if err != nil {
		return 0, 0, fmt.Errorf("image user %q: %w", user, err)
	}
	if !found {
		return 0, 0, fmt.Errorf("image user %q: no group %q in the image's /etc/group", user, g)
	}
	if gid, ok := parseID(e[2]); ok {
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("image user %q: bad /etc/group entry %q", user, strings.Join(e, ":"))
}

// parseID parses a uid or gid (0 to 2^32-2; 2^32-1 is "no id").
func parseID(s string) (int, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false
	}
	return int(n), true
}

// lookup returns the first colon-separated line of file (inside the
// unpacked root, resolved without leaving it) that match accepts. A missing
// file has no entries.
func lookup(root, file string, match func([]string) bool) ([]string, bool, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	f, err := r.Open(file)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("/%s: %w", file, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxUserDB))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if fields := strings.Split(line, ":"); match(fields) {
			return fields, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("/%s: %w", file, err)
	}
	return nil, false, nil
}
