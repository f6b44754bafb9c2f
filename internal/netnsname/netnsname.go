// Package netnsname names network namespaces for people: by the pod
// that lives in one, its name under /run/netns (ip netns), "host" for
// PID 1's, or a process in it, instead of an inode number alone.
package netnsname

import (
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/procs"
)

// Resolver names namespaces from /proc (and /run/netns) under a host
// root, cached; an unknown inode makes it look again, at most once per
// MinRefresh. Safe for concurrent use.
type Resolver struct {
	root string
	ids  *identity.Resolver

	MinRefresh time.Duration

	mu      sync.Mutex
	names   map[uint32]string
	first   map[uint32]uint32 // the lowest pid in each namespace
	scanned time.Time
}

// New returns a Resolver; ids says who a process is (its pod), nil for
// no pod names.
func New(root string, ids *identity.Resolver) *Resolver {
	if root == "/" {
		root = ""
	}
	return &Resolver{root: root, ids: ids, MinRefresh: time.Second}
}

// Name is how people call namespace ino: "pod:NAMESPACE/POD",
// "netns:NAME", "host" or "COMM/PID" (a process living in it); "" when
// no process lives in it any more.
func (r *Resolver) Name(ino uint32) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.names[ino]; ok {
		return n
	}
	if r.names != nil && time.Since(r.scanned) < r.MinRefresh {
		return ""
	}
	r.scan()
	return r.names[ino]
}

// FindPod returns a process of pod NAMESPACE/NAME, and its namespace's
// inode.
func (r *Resolver) FindPod(namespace, name string) (pid, ino uint32, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scan()
	want := "pod:" + namespace + "/" + name
	for ino, n := range r.names {
		if n == want {
			return r.first[ino], ino, true
		}
	}
	// A hostNetwork pod shares the host's namespace: look at every
	// process, not only the first of each namespace.
	if r.ids != nil {
		for _, pid := range r.pids() {
			if id := r.ids.ByPID(pid); id != nil && id.Namespace == namespace && id.Pod == name {
				if ino, ok := r.netnsOf(pid); ok {
					return pid, ino, true
				}
			}
		}
	}
	return 0, 0, false
}

func (r *Resolver) pids() []uint32 {
	d, err := os.Open(r.root + "/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []uint32
	for _, n := range names {
		if p, err := strconv.ParseUint(n, 10, 32); err == nil {
			out = append(out, uint32(p))
		}
	}
	return out
}

func (r *Resolver) netnsOf(pid uint32) (uint32, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(r.root+"/proc/"+strconv.FormatUint(uint64(pid), 10)+"/ns/net", &st); err != nil {
		return 0, false
	}
	return uint32(st.Ino), true
}

// hostNetns is PID 1's namespace; where PID 1's cannot be read (a
// sandbox whose PID 1 is not the host's init), socktrace's own, unless it
// looks at a host root of another.
func (r *Resolver) hostNetns() (uint32, bool) {
	if ino, ok := r.netnsOf(1); ok {
		return ino, true
	}
	if r.root != "" {
		return 0, false
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, false
	}
	return uint32(st.Ino), true
}

// scan names every namespace a process lives in.
func (r *Resolver) scan() {
	r.scanned = time.Now()
	first := map[uint32]uint32{}
	for _, pid := range r.pids() {
		ino, ok := r.netnsOf(pid)
		if !ok {
			continue
		}
		if p, seen := first[ino]; !seen || pid < p {
			first[ino] = pid
		}
	}
	names := make(map[uint32]string, len(first))
	for ino, pid := range first {
		names[ino] = r.processName(pid)
	}
	// ip netns names win over a process's; the host is the host.
	if ents, err := os.ReadDir(r.root + "/run/netns"); err == nil {
		for _, e := range ents {
			var st syscall.Stat_t
			if syscall.Stat(r.root+"/run/netns/"+e.Name(), &st) == nil {
				names[uint32(st.Ino)] = "netns:" + e.Name()
			}
		}
	}
	if ino, ok := r.hostNetns(); ok {
		names[ino] = "host"
	}
	// A pod wins over all but the host (a hostNetwork pod lives there).
	if r.ids != nil {
		for ino, pid := range first {
			if names[ino] == "host" {
				continue
			}
			if id := r.ids.ByPID(pid); id != nil && id.Pod != "" {
				names[ino] = "pod:" + id.Namespace + "/" + id.Pod
			}
		}
	}
	r.names, r.first = names, first
}

func (r *Resolver) processName(pid uint32) string {
	p := strconv.FormatUint(uint64(pid), 10)
	comm, ok := procs.Comm(r.root+"/proc", pid)
	if !ok {
		return p
	}
	return comm + "/" + p
}
