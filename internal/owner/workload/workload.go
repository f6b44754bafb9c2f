// Package workload says who runs in a cgroup, from its path alone: the systemd unit, or the container (id and runtime) and, for Kubernetes, the pod's UID.
package workload

import "strings"

// Workload is what a cgroup path says.
type Workload struct {
	Unit        string // innermost systemd *.service or *.scope unit (e.g. "nginx.service", "session-3.scope", "user@1000.service" when nothing is inside it); "" for a container's cgroup
	ContainerID string // the container id (lower-case hex as written in the path, usually 64 chars); for LXC the container's name
	Runtime     string // "docker", "containerd", "cri-o", "podman", "lxc" ("" when no container)
	PodUID      string // Kubernetes pod UID in its canonical dashed form (the systemd driver writes '_' for '-': convert back)
	QoS         string // "guaranteed", "burstable", "besteffort" for kubepods ("" otherwise)
	Conmon      bool   // the path is a runtime's monitor (crio-conmon-<id>.scope, libpod-conmon-<id>.scope, lxc.monitor.NAME), not the container itself
}

// IsZero reports whether nothing was recognised.
func (w Workload) IsZero() bool { return w == Workload{} }

// prefixes names the container segments "<prefix><hex id>[.scope]". Where one
// prefix starts another, the longer comes first.
var prefixes = [...]struct {
	prefix, runtime string
	conmon          bool
}{
	{"cri-containerd-", "containerd", false}, // containerd's CRI plugin, systemd driver
	{"crio-conmon-", "cri-o", true},
	{"crio-", "cri-o", false},
	{"docker-", "docker", false},
	{"libpod-conmon-", "podman", true},
	{"libpod-payload-", "podman", false}, // podman --cgroups=split (Quadlet's default)
	{"libpod-", "podman", false},
	{"nerdctl-", "containerd", false},
}

// Parse reads path. Unknown layouts give a zero Workload (or whatever parts are recognisable, e.g. a Unit). It never panics and never allocates more than O(len(path)).
//
// Segments are read from the root down and the innermost one of each kind
// wins: a container segment replaces any container or unit above it (a
// container's cgroup has no Unit, nor do cgroups inside it), and a pod
// segment starts afresh, so a pod nested in a container (a kind node) reports
// the pod. PodUID and QoS are the innermost pod's, also for a container found
// below it. Static pods, whose UID is a 32-hex config hash rather than a
// UUID, give QoS but no PodUID.
func Parse(path string) Workload {
	var w Workload
	var parent, grand string
	afterPod := false
	for rest := path; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." { // "/../../x" is how a path outside one's cgroup namespace reads
			continue
		}
		afterPod = w.step(seg, parent, grand, afterPod)
		grand, parent = parent, seg
	}
	return w
}

// step reads one segment, given the two above it, and reports whether it was a pod.
func (w *Workload) step(seg, parent, grand string, afterPod bool) (pod bool) {
	// "slice:prefix:id": a systemd-driver cgroupsPath that runc applied as a
	// cgroupfs path (containerd without SystemdCgroup = true).
	if slice, rest, ok := strings.Cut(seg, ":"); ok {
		prefix, id, _ := strings.Cut(rest, ":")
		if runtime := runtimeOf(prefix); runtime != "" && isHex(id, 12, 64) {
			if uid, qos, ok := podSlice(slice); ok {
				w.setPod(uid, qos)
			}
			w.setContainer(id, runtime, false)
			return false
		}
	}
	if uid, qos, ok := podSlice(seg); ok {
		w.setPod(uid, qos)
		return true
	}
	if name, ok := strings.CutPrefix(seg, "pod"); ok && qosClass(parent, grand) != "" {
		if uid, ok := podUID(name, '-'); ok { // cgroupfs driver: .../[burstable/]pod<uid>
			w.setPod(uid, qosClass(parent, grand))
			return true
		}
	}
	for _, p := range prefixes {
		if id, ok := strings.CutPrefix(seg, p.prefix); ok {
			if id = strings.TrimSuffix(id, ".scope"); isHex(id, 12, 64) {
				w.setContainer(id, p.runtime, p.conmon)
				return false
			}
		}
	}
	switch {
	case isHex(seg, 64, 64) && (afterPod || parent == "docker" || parent == "default"):
		// Bare ids: below a cgroupfs pod (runtime unknown), Docker's and
		// containerd's default cgroupfs parents (/docker, /<namespace>).
		w.setContainer(seg, bareRuntime[parent], false)
	case strings.HasPrefix(seg, "lxc.payload.") && len(seg) > len("lxc.payload."):
		w.setContainer(seg[len("lxc.payload."):], "lxc", false)
	case strings.HasPrefix(seg, "lxc.monitor.") && len(seg) > len("lxc.monitor."):
		w.setContainer(seg[len("lxc.monitor."):], "lxc", true)
	case parent == "lxc" || parent == "lxc.payload": // LXC before 4.0
		w.setContainer(seg, "lxc", false)
	case parent == "lxc.monitor":
		w.setContainer(seg, "lxc", true)
	case seg == "conmon" && parent == "libpod_parent": // podman, cgroupfs driver: all monitors share it
		w.setContainer("", "podman", true)
	case isUnit(seg) && *w == Workload{Unit: w.Unit}: // no unit inside a container or pod
		w.Unit = seg
	}
	return false
}

// bareRuntime names the runtime of a bare 64-hex id by the segment above it.
var bareRuntime = map[string]string{"docker": "docker", "default": "containerd"}

func (w *Workload) setPod(uid, qos string) { *w = Workload{PodUID: uid, QoS: qos} }

func (w *Workload) setContainer(id, runtime string, conmon bool) {
	w.Unit, w.ContainerID, w.Runtime, w.Conmon = "", id, runtime, conmon
}

// runtimeOf maps the prefix of a "slice:prefix:id" cgroupsPath to a runtime.
func runtimeOf(prefix string) string {
	for _, p := range prefixes {
		if !p.conmon && p.prefix == prefix+"-" {
			return p.runtime
		}
	}
	return ""
}

// podSlice reads a kubelet pod slice under the systemd driver:
// [<root>-]kubepods[-burstable|-besteffort]-pod<uid with '_'>.slice.
func podSlice(seg string) (uid, qos string, ok bool) {
	name, ok := strings.CutSuffix(seg, ".slice")
	i := strings.LastIndexByte(name, '-')
	if !ok || i < 0 || !strings.HasPrefix(name[i+1:], "pod") {
		return "", "", false
	}
	head := name[:i] // e.g. "kubelet-kubepods-burstable": its last two components play parent and grandparent
	j := strings.LastIndexByte(head, '-')
	g := head[:max(j, 0)]
	qos = qosClass(head[j+1:], g[strings.LastIndexByte(g, '-')+1:])
	if qos == "" {
		return "", "", false
	}
	uid, ok = podUID(name[i+len("-pod"):], '_')
	return uid, qos, ok
}

// qosClass names the QoS class of a pod cgroup from the two segments above it.
func qosClass(parent, grand string) string {
	switch {
	case parent == "kubepods":
		return "guaranteed"
	case grand == "kubepods" && (parent == "burstable" || parent == "besteffort"):
		return parent
	}
	return ""
}

// podUID checks a pod UID written with sep between its groups and returns it
// dashed. A static pod's 32-hex config hash is a pod too, but has no UID to give.
func podUID(s string, sep byte) (string, bool) {
	if isHex(s, 32, 32) {
		return "", true
	}
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		dash := i == 8 || i == 13 || i == 18 || i == 23
		if dash != (s[i] == sep) || !dash && !isHexDigit(s[i]) {
			return "", false
		}
	}
	return strings.ReplaceAll(s, string(sep), "-"), true
}

// isHex reports whether s is lower-case hex of min to max characters.
func isHex(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// isUnit reports whether seg is a systemd service or scope unit name.
func isUnit(seg string) bool {
	stem, ok := strings.CutSuffix(seg, ".service")
	if !ok {
		stem, ok = strings.CutSuffix(seg, ".scope")
	}
	if !ok || stem == "" || len(seg) > 255 {
		return false
	}
	for i := 0; i < len(stem); i++ {
		c := stem[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(":-_.\\@", c) >= 0) {
			return false
		}
	}
	return true
}
