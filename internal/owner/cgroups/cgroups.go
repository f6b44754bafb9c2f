// Package cgroups finds the cgroup of a process: the path of a cgroup v2
// id (what the BPF program records with bpf_get_current_cgroup_id), by
// the cgroup2 mount, and the path a process's /proc/PID/cgroup gives.
//
// The cgroup2 mount is found in the mount table, never assumed: it is
// /sys/fs/cgroup on a pure v2 host and /sys/fs/cgroup/unified on a
// hybrid v1+v2 one; where socktrace's mount namespace has none (started
// under `ip netns exec`), it is reached through another process's root
// or mounted privately (mount.go says how). On a v1-only host there is
// no v2 id worth mapping; the path of the name=systemd (or pids)
// hierarchy stands in for it.
package cgroups

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxPaths bounds the id → path cache: a host with more cgroups than
// this gets the rest looked up again on each miss (rate-limited).
const MaxPaths = 65536

// MaxPathBytes bounds the bytes of the paths cached, whatever their
// length (a delegated subtree may nest cgroups to thousands of bytes):
// beyond, cgroups are not cached (counted in Dropped). A variable for
// tests.
var MaxPathBytes = 16 << 20

// Resolver maps cgroup ids to paths and processes to their cgroup.
// Safe for concurrent use.
type Resolver struct {
	root  string // the host's root as socktrace sees it ("" or "/": ours)
	mount string // where cgroup2 is mounted, under root ("" if none)

	// MinRefresh bounds how often an unknown id makes it walk the
	// cgroup2 tree again.
	MinRefresh time.Duration

	mu      sync.Mutex
	paths   map[uint64]string
	walked  time.Time
	dropped uint64 // cgroups not cached because the cache was full
}

// New returns a Resolver for the host whose root is at root ("/" or ""
// for socktrace's own; /host when it runs in a container with the
// host's / mounted there).
func New(root string) *Resolver {
	if root == "/" {
		root = ""
	}
	r := &Resolver{root: root, MinRefresh: time.Second, paths: map[uint64]string{}}
	if m := findMount(root); m != "" {
		r.mount = filepath.Clean(m) // walk compares it with cleaned paths
	}
	return r
}

// Mount is a path to the root of the cgroup2 hierarchy, valid in
// socktrace's mount namespace ("" if none was found): where cgroup2 is
// mounted (under the host root), or, where it is not mounted in ours
// (under `ip netns exec`, which mounts a fresh /sys), /proc/self/fd/N
// of a directory socktrace holds open (see findMount).
func (r *Resolver) Mount() string { return r.mount }

// Path returns the path (relative to the cgroup2 mount, starting with
// /) of cgroup id. An unknown id makes it walk the tree again, at most
// once per MinRefresh; false if it is still unknown (the cgroup is gone,
// or there is no cgroup2 mount).
func (r *Resolver) Path(id uint64) (string, bool) {
	if id == 0 || r.mount == "" {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[id]; ok {
		return p, true
	}
	if time.Since(r.walked) < r.MinRefresh {
		return "", false
	}
	r.walk()
	p, ok := r.paths[id]
	return p, ok
}

// walk rebuilds the cache from the cgroup2 tree. Cgroups that went away
// leave it; their ids are never reused (they are 64-bit inode numbers).
func (r *Resolver) walk() {
	r.walked = time.Now()
	paths := make(map[uint64]string, len(r.paths))
	var dropped uint64
	bytes := 0
	// "/.": the mount may be /proc/self/fd/N, a link WalkDir would not
	// follow.
	filepath.WalkDir(r.mount+"/.", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed meanwhile: skip it
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := strings.TrimPrefix(filepath.Clean(p), r.mount)
		if rel == "" {
			rel = "/"
		}
		if len(paths) >= MaxPaths || bytes+len(rel) > MaxPathBytes {
			dropped++
			return nil
		}
		bytes += len(rel)
		paths[st.Ino] = rel
		return nil
	})
	r.paths, r.dropped = paths, dropped
}

// Dropped is how many cgroups the last walk found but did not cache
// (more than MaxPaths, or MaxPathBytes of paths).
func (r *Resolver) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// ID returns the cgroup v2 id of path (relative to the mount): the inode
// of its directory.
func (r *Resolver) ID(path string) (uint64, bool) {
	if r.mount == "" || !strings.HasPrefix(path, "/") {
		return 0, false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(r.mount+path, &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// OfPID returns the cgroup path of process pid from /proc/PID/cgroup:
// the v2 one (the "0::" line) where the host has cgroup2, else the
// name=systemd hierarchy's, else the pids hierarchy's.
func (r *Resolver) OfPID(pid uint32) (string, bool) {
	b, err := os.ReadFile(r.root + "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup")
	if err != nil {
		return "", false
	}
	return ParseProcCgroup(string(b), r.mount != "")
}

// ParseProcCgroup reads the text of a /proc/PID/cgroup file. With v2,
// the "0::PATH" line; otherwise (or if there is none) the name=systemd
// line's path, else the pids line's.
func ParseProcCgroup(text string, v2 bool) (string, bool) {
	var systemd, pids string
	for _, line := range strings.Split(text, "\n") {
		// hierarchy-ID:controller-list:path (the path may hold ':').
		first := strings.IndexByte(line, ':')
		if first < 0 {
			continue
		}
		second := strings.IndexByte(line[first+1:], ':')
		if second < 0 {
			continue
		}
		id, ctrls, path := line[:first], line[first+1:first+1+second], line[first+2+second:]
		if !strings.HasPrefix(path, "/") {
			continue
		}
		switch {
		case id == "0" && ctrls == "":
			if v2 {
				return path, true
			}
		case ctrls == "name=systemd":
			systemd = path
		case hasController(ctrls, "pids"):
			pids = path
		}
	}
	if systemd != "" {
		return systemd, true
	}
	if pids != "" {
		return pids, true
	}
	return "", false
}

func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}
