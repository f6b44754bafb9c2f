// Package netnsname names network namespaces for people: by the pod
// that lives in one, its name under /run/netns (ip netns), "host" for
// the host's (when socktrace knows which that is), or a process in it,
// instead of an inode number alone.
package netnsname

import (
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
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
	// PID 1's namespace, and whether it is the initial one.
	pid1Ino  uint32
	pid1Init verdict
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

// hostNetns is the host's namespace when socktrace knows which it is:
// the initial network namespace (the kernel's first, init_net). That is
// socktrace's own when the kernel says so (see ownNetns); otherwise PID 1's
// (under the host root) when it is not socktrace's own, checked by
// entering it where socktrace may, taken on trust where it may not. A
// namespace named after no evidence would be a guess: where /proc/1/ns
// cannot be read (a sandbox, some containers) and socktrace runs in
// another namespace (ip netns exec), no namespace is "host", unless the
// kernel gives the initial one its fixed inode number (seen is what a
// scan found).
func (r *Resolver) hostNetns(seen map[uint32]uint32) (uint32, bool) {
	if _, ok := seen[initNetnsIno]; ok && initNetnsIno != 0 {
		return initNetnsIno, true
	}
	own := ownNetns()
	if own.ok && own.init == yes {
		return own.ino, true
	}
	ino, ok := r.netnsOf(1)
	if !ok {
		return 0, false
	}
	if own.ok && ino == own.ino {
		// PID 1 lives in socktrace's own namespace: a container's init
		// when the kernel says it is not the initial one.
		return ino, own.init == unknown
	}
	if r.pid1Ino != ino {
		r.pid1Ino, r.pid1Init = ino, initialAt(r.root+"/proc/1/ns/net")
	}
	return ino, r.pid1Init != no
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
	if ino, ok := r.hostNetns(first); ok {
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
