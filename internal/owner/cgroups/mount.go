package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// findMount returns a path to the root of the cgroup2 hierarchy that is
// valid in socktrace's mount namespace, trying in turn:
//
//  1. with a host root, the cgroup2 mount of the host's PID 1, under
//     root (none there: a v1-only host, no cgroup2);
//  2. a cgroup2 mount in our own mount table (the usual case);
//  3. the cgroup2 mount of PID 1 or of one of our ancestors, through
//     /proc/PID/root: `ip netns exec` unshares the mount namespace and
//     mounts a fresh /sys without cgroup mounts, but the process that
//     ran it still has them;
//  4. a cgroup2 mount of our own that no mount table shows (fsmount),
//     with the options of a mount of it seen in 2 or 3: each cgroup2
//     mount applies its options to the whole hierarchy, so without
//     knowing them socktrace does not mount.
//
// 3 and 4 hold the directory open and give /proc/self/fd/N. In 2 to 4,
// a candidate must be a cgroup2 file system (statfs), and a mount of
// the hierarchy's root (of our cgroup namespace's), not of a subtree.
func findMount(root string) string {
	if root != "" {
		if p, ok := hostMount(root); ok {
			return p
		}
	}
	var opts []string // super options of a cgroup2 mount seen
	seen := false
	try := func(table, prefix string) string {
		for _, m := range cgroup2Mounts(table) {
			seen, opts = true, m.opts
			if p := prefix + m.point; isCgroup2(p) {
				return p
			}
		}
		return ""
	}
	// Our thread's view: the process's, except in tests.
	if p := try("/proc/thread-self/mountinfo", ""); p != "" {
		return p
	}
	held.Lock()
	defer held.Unlock()
	if held.path != "" && isCgroup2(held.path) {
		return held.path
	}
	for _, pid := range elders() {
		base := "/proc/" + strconv.Itoa(pid)
		if p := try(base+"/mountinfo", base+"/root"); p != "" {
			if h, err := hold(p); err == nil {
				held.path = h
				return h
			}
		}
	}
	if !seen {
		return ""
	}
	if p, err := mountPrivate(opts); err == nil {
		held.path = p
		return p
	}
	return ""
}

// hostMount reads the mount table of the host's PID 1 under root: the
// cgroup2 mount under root, or "" if the table has none (a v1-only
// host). ok is false if the table cannot be read or the mount is not
// there under root (the host's / was mounted without what is under it).
func hostMount(root string) (string, bool) {
	f, err := os.Open(root + "/proc/1/mounts")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			p := root + unescapeMount(fields[1])
			st, err := os.Stat(p)
			return p, err == nil && st.IsDir()
		}
	}
	return "", true
}

// held is the cgroup2 root found by steps 3 or 4 of findMount, held
// open for the life of the process and shared by every Resolver.
var held struct {
	sync.Mutex
	path string
}

type mountEntry struct {
	point string   // where, in the reader's root
	opts  []string // super options
}

// cgroup2Mounts lists the cgroup2 mounts of a mountinfo table whose root
// is the hierarchy's (or the cgroup namespace's) root.
func cgroup2Mounts(table string) []mountEntry {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "cgroup2" || fields[3] != "/" {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(fields[4]), opts: strings.Split(fields[sep+3], ",")})
	}
	return out
}

// unescapeMount undoes the octal escapes of the mount tables (\040 for
// a space, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// elders are PID 1 and our ancestors, nearest first after PID 1.
func elders() []int {
	pids := []int{1}
	for pid, n := os.Getppid(), 0; pid > 1 && n < 64; n++ {
		pids = append(pids, pid)
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			break
		}
		pid = 0
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				pid, _ = strconv.Atoi(strings.TrimSpace(v))
				break
			}
		}
	}
	return pids
}

// hold opens directory path and returns /proc/self/fd/N for it: valid
// whatever becomes of path (the process it goes through may exit).
func hold(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if !isCgroup2(p) {
		unix.Close(fd)
		return "", fmt.Errorf("%s: not a cgroup2 file system", path)
	}
	return p, nil
}

// mountPrivate mounts cgroup2 with options opts (a mount table's super
// options) where no mount table shows it: the mount exists only through
// the file descriptor it returns (as /proc/self/fd/N), and goes when
// socktrace exits. It is the root of our cgroup namespace.
func mountPrivate(opts []string) (string, error) {
	fs, err := unix.Fsopen("cgroup2", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("fsopen cgroup2: %w", err)
	}
	defer unix.Close(fs)
	for _, o := range opts {
		if o == "rw" || o == "ro" || o == "" {
			continue
		}
		if err := unix.FsconfigSetFlag(fs, o); err != nil {
			return "", fmt.Errorf("cgroup2 option %s: %w", o, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return "", fmt.Errorf("create cgroup2 mount: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return "", fmt.Errorf("fsmount cgroup2: %w", err)
	}
	return "/proc/self/fd/" + strconv.Itoa(mnt), nil
}
