// Package identity says who owns a socket beyond its process: the cgroup
// of the owner and what it means (a systemd unit, a container, a
// Kubernetes pod and container), joining the cgroup path with what the
// container runtime's CRI socket answers and the kubelet's log
// directories say.
package identity

import (
	"strings"
	"sync"
	"time"

	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/owner/cri"
	"github.com/socktrace/socktrace/internal/owner/kubelet"
	"github.com/socktrace/socktrace/internal/owner/workload"
)

// Identity is who runs in one cgroup. Values are shared and never
// changed once made: compare pointers, keep them.
type Identity struct {
	Cgroup      string // path relative to the cgroup2 mount (or v1 name=systemd hierarchy)
	Unit        string // systemd unit, when not a container
	ContainerID string
	Runtime     string // docker, containerd, cri-o, podman, lxc
	PodUID      string
	Namespace   string // Kubernetes namespace (not the network namespace)
	Pod         string
	Container   string
}

// Workload is the short name a person reads: namespace/pod/container,
// the container id (12 characters), or the unit; "" when none applies.
func (id *Identity) Workload() string {
	if id == nil {
		return ""
	}
	switch {
	case id.Pod != "":
		c := id.Container
		if c == "" {
			c = short(id.ContainerID)
		}
		if c == "" {
			return id.Namespace + "/" + id.Pod
		}
		return id.Namespace + "/" + id.Pod + "/" + c
	case id.ContainerID != "":
		if id.Runtime == "lxc" {
			return "lxc/" + id.ContainerID
		}
		return id.Runtime + "/" + short(id.ContainerID)
	}
	return id.Unit
}

// Label is Workload with what it is: pod:NAMESPACE/POD/CONTAINER,
// container:RUNTIME/ID or unit:NAME; "" when none applies.
func (id *Identity) Label() string {
	w := id.Workload()
	switch {
	case w == "":
		return ""
	case id.Pod != "":
		return "pod:" + w
	case id.ContainerID != "":
		return "container:" + w
	}
	return "unit:" + w
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// FromPath makes the identity of a cgroup path, without pod names.
func FromPath(path string) *Identity {
	w := workload.Parse(path)
	id := &Identity{Cgroup: path, Unit: w.Unit, ContainerID: w.ContainerID, Runtime: w.Runtime, PodUID: w.PodUID}
	return id
}

// MaxCached bounds the identities remembered, by cgroup id and by path.
const MaxCached = 65536

// retryNames: how long an identity whose pod names were not found is
// kept before they are looked for again (the kubelet makes the log
// directory as the container starts).
const retryNames = 5 * time.Second

// Resolver finds identities, cached by cgroup id and by path. Safe for
// concurrent use.
type Resolver struct {
	cg   *cgroups.Resolver
	kube *kubelet.Logs
	cri  *cri.Client

	mu     sync.Mutex
	byID   map[uint64]entry
	byPath map[string]entry
}

type entry struct {
	id    *Identity
	retry time.Time // zero: final
}

// NoCRI as NewResolver's criSocket asks no runtime.
const NoCRI = "none"

// NewResolver returns a Resolver over the host root (where /proc and the
// cgroup mount are), the kubelet's log directory (its parent: /var/log
// on a node; "" to not read it) and the runtime's CRI socket (a path under
// root; "": the first of cri.Sockets found there; NoCRI: none).
func NewResolver(root, kubeletLogDir, criSocket string) *Resolver {
	r := &Resolver{cg: cgroups.New(root), byID: map[uint64]entry{}, byPath: map[string]entry{}}
	if kubeletLogDir != "" {
		r.kube = kubelet.New(root + kubeletLogDir)
	}
	if criSocket != NoCRI {
		r.cri = cri.New(root, criSocket)
	}
	return r
}

// Cgroups is the resolver of cgroup paths in use.
func (r *Resolver) Cgroups() *cgroups.Resolver { return r.cg }

// ByID returns the identity of cgroup v2 id (recorded by the BPF program
// with the owner), falling back to pid's /proc/PID/cgroup when the id is
// unknown (a cgroup already gone, or a host without cgroup2); nil when
// neither says.
func (r *Resolver) ByID(cgid uint64, pid uint32) *Identity {
	if cgid != 0 {
		r.mu.Lock()
		e, ok := r.byID[cgid]
		r.mu.Unlock()
		// (The clock only for entries that expire: it is read for every
		// transition otherwise.)
		if ok && (e.retry.IsZero() || time.Now().Before(e.retry)) {
			return e.id
		}
		if path, ok := r.cg.Path(cgid); ok {
			id := r.ByPath(path)
			remember(r, r.byID, cgid, id)
			return id
		}
	}
	if pid == 0 {
		return nil
	}
	return r.ByPID(pid)
}

// ByPID returns the identity of process pid from /proc/PID/cgroup; nil
// when it cannot be read (the process is gone).
func (r *Resolver) ByPID(pid uint32) *Identity {
	path, ok := r.cg.OfPID(pid)
	if !ok {
		return nil
	}
	return r.ByPath(path)
}

// ByPath returns the identity of a cgroup path.
func (r *Resolver) ByPath(path string) *Identity {
	now := time.Now()
	r.mu.Lock()
	e, ok := r.byPath[path]
	r.mu.Unlock()
	if ok && (e.retry.IsZero() || now.Before(e.retry)) {
		return e.id
	}
	id := FromPath(path)
	r.name(id)
	remember(r, r.byPath, path, id)
	return id
}

// name fills in pod, namespace and container names from the runtime's
// CRI, else from the kubelet's log directories.
func (r *Resolver) name(id *Identity) {
	if id.PodUID == "" && id.ContainerID == "" {
		return
	}
	if r.cri != nil && r.nameFromCRI(id) {
		return
	}
	if r.kube == nil {
		return
	}
	if id.ContainerID != "" {
		if name, pod, ok := r.kube.Container(id.ContainerID); ok {
			id.Container = name
			setPod(id, pod.Namespace, pod.Name)
			if id.PodUID == "" {
				id.PodUID = pod.UID
			}
			return
		}
	}
	if id.PodUID != "" {
		if pod, ok := r.kube.Pod(id.PodUID); ok {
			setPod(id, pod.Namespace, pod.Name)
			if id.ContainerID == "" {
				return // the pod's own cgroup (its sandbox)
			}
			if name, ok := r.kube.ContainerInPod(id.PodUID); ok {
				id.Container = name
			}
		}
	}
}

// setPod names id's pod unless the runtime named it already.
func setPod(id *Identity, namespace, pod string) {
	if id.Pod == "" {
		id.Namespace, id.Pod = namespace, pod
	}
}

// nameFromCRI names id from the runtime; it reports whether the runtime
// said all it could (the kubelet's logs are then not read).
func (r *Resolver) nameFromCRI(id *Identity) bool {
	if id.ContainerID != "" {
		if name, pod, ok := r.cri.Container(id.ContainerID); ok && (id.PodUID == "" || sameUID(id.PodUID, pod.UID)) {
			// name "": the id is a sandbox's (its pause container).
			id.Container, id.Namespace, id.Pod = name, pod.Namespace, pod.Name
			if id.Runtime == "" { // a bare id below a cgroupfs pod
				id.Runtime = r.cri.Runtime()
			}
			if id.PodUID == "" && len(pod.UID) == 36 {
				id.PodUID = pod.UID
			}
			return true
		}
	}
	if id.PodUID != "" {
		if pod, ok := r.cri.Pod(id.PodUID); ok {
			id.Namespace, id.Pod = pod.Namespace, pod.Name
			return id.ContainerID == ""
		}
	}
	return false
}

func sameUID(a, b string) bool {
	return strings.ReplaceAll(a, "-", "") == strings.ReplaceAll(b, "-", "")
}

// complete: nothing more can be learned about id later.
func complete(id *Identity) bool {
	if id.PodUID == "" && id.ContainerID == "" {
		return true
	}
	return id.Pod != "" && (id.ContainerID == "" || id.Container != "")
}

func remember[K comparable](r *Resolver, m map[K]entry, k K, id *Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m) >= MaxCached {
		clear(m) // rare: more cgroups than that; start again
	}
	e := entry{id: id}
	if (r.kube != nil || r.cri != nil) && !complete(id) {
		e.retry = time.Now().Add(retryNames)
	}
	m[k] = e
}

// PIDs is ByPID for one pass over many sockets: each process's
// /proc/PID/cgroup is read once (a listing holds many sockets of few
// processes).
type PIDs struct {
	r *Resolver
	m map[uint32]*Identity
}

// PIDs returns a fresh per-pass cache of ByPID.
func (r *Resolver) PIDs() *PIDs { return &PIDs{r: r, m: map[uint32]*Identity{}} }

// Of is the identity of process pid, as ByPID, looked up once.
func (c *PIDs) Of(pid uint32) *Identity {
	id, ok := c.m[pid]
	if !ok {
		id = c.r.ByPID(pid)
		c.m[pid] = id
	}
	return id
}

// Recent is a one-entry cache in front of a Resolver's ByID, for one
// goroutine that asks for every transition: they come in runs of the same
// cgroup, and ByID takes a lock and a map lookup. An answer is reused for
// at most RecentFor (by the caller's CLOCK_MONOTONIC stamps), so that an
// identity the resolver completes later (pod names) shows soon.
type Recent struct {
	cgid  uint64
	until uint64
	id    *Identity
}

// RecentFor is how long Recent reuses an answer.
const RecentFor = time.Second

// ByID is r.ByID(cgid, pid), from the cache when cgid was the last asked
// for less than RecentFor before k.
func (c *Recent) ByID(r *Resolver, cgid uint64, pid uint32, k uint64) *Identity {
	if cgid == 0 {
		return r.ByID(cgid, pid) // by the pid: not cached
	}
	if cgid == c.cgid && k < c.until && c.id != nil {
		return c.id
	}
	id := r.ByID(cgid, pid)
	c.cgid, c.until, c.id = cgid, k+uint64(RecentFor), id
	return id
}
