// Package kubelet names pods and containers from the kubelet's log
// directories, without talking to any API: the kubelet spells the names
// out in the paths it writes, on every node.
//
// The layout, as kubernetes/kubernetes writes it:
//
//   - pkg/kubelet/kuberuntime/helpers.go: BuildPodLogsDirectory names a
//     pod's directory <namespace>_<pod-name>_<pod-uid> (logPathDelimiter "_")
//     under the pod logs directory (/var/log/pods unless the kubelet's
//     podLogsDir says otherwise); BuildContainerLogsDirectory adds
//     /<container-name>, and buildContainerLogsPath the file <restart>.log.
//   - pkg/kubelet/kuberuntime/legacy.go: legacyLogSymlink and logSymlink name
//     /var/log/containers/<pod-name>_<namespace>_<container-name>-<id>.log
//     (BuildPodFullName, pkg/kubelet/container/runtime.go, is
//     <pod-name>_<namespace>), cut to 255 bytes; startContainer in
//     kuberuntime_container.go points it at the container's log file above.
//   - pkg/kubelet/config/common.go: applyDefaults gives a static pod (a
//     manifest on the node) a UID of 32 hex digits, an MD5, without dashes.
//
// A link's target is only parsed, never followed: when /var/log is mounted
// elsewhere, only its last three path elements mean anything here.
package kubelet

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	maxEntries = 1 << 16 // pods, and containers, read from one directory
	maxName    = 253     // longest namespace, pod or container name taken
	maxCtrDirs = 64      // entries read from one pod's directory
)

// Pod is a pod as its log directory names it.
type Pod struct{ Namespace, Name, UID string }

type podEntry struct {
	pod  Pod
	ctrs int    // container directories seen (maxCtrDirs: maybe more)
	ctr  string // the container's name when ctrs is 1
}

type ctrEntry struct {
	name string
	pod  Pod
}

// Logs reads DIR/pods and DIR/containers (DIR is /var/log on a node;
// socktrace's --kubelet-log-dir), caching what it read. It is safe for
// concurrent use.
type Logs struct {
	// MinRefresh bounds how often a key not in the cache makes a lookup
	// re-read a directory. Set it before the first lookup.
	MinRefresh time.Duration

	dir string
	now func() time.Time

	mu                 sync.Mutex
	pods               map[string]podEntry // by UID without dashes
	ctrs               map[string]ctrEntry // by 64-hex container id
	podsRead, ctrsRead time.Time           // zero: not read yet
}

// New returns a Logs for dir. Nothing is read until the first lookup.
// MinRefresh (default 1s) bounds how often an unknown key makes it re-read
// the directories.
func New(dir string) *Logs {
	return &Logs{MinRefresh: time.Second, dir: dir, now: time.Now}
}

// Pod returns the pod with this UID (dashed form; a static pod's 32 hex
// digits also work). An unknown UID re-reads DIR/pods, at most once per
// MinRefresh.
func (l *Logs) Pod(uid string) (Pod, bool) {
	e, ok := l.pod(uid, false)
	return e.pod, ok
}

// ContainerInPod returns the container name for a pod UID when the pod has
// exactly one container directory (used when the runtime's container id is
// unknown), ok false otherwise. Init and ephemeral containers have
// directories too. An unknown UID, or a pod without a container directory
// yet, re-reads DIR/pods, at most once per MinRefresh.
func (l *Logs) ContainerInPod(uid string) (string, bool) {
	e, ok := l.pod(uid, true)
	return e.ctr, ok && e.ctrs == 1
}

func (l *Logs) pod(uid string, wantCtr bool) (podEntry, bool) {
	if !validUID(uid) {
		return podEntry{}, false
	}
	key := strings.ReplaceAll(uid, "-", "")
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.pods[key]
	if (!ok || wantCtr && e.ctrs == 0) && l.due(&l.podsRead) {
		l.pods = l.readPods(l.pods)
		e, ok = l.pods[key]
	}
	return e, ok
}

// Container returns the name of the container with this id (full hex id; a
// 12+ char prefix also matches if unique) and its pod. An unknown id
// re-reads DIR/containers, at most once per MinRefresh.
func (l *Logs) Container(id string) (name string, pod Pod, ok bool) {
	id = strings.ToLower(id)
	if len(id) < 12 || len(id) > 64 || !isHex(id) {
		return "", Pod{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.findCtr(id)
	if !ok && l.due(&l.ctrsRead) {
		l.ctrs = l.readCtrs(l.ctrs)
		c, ok = l.findCtr(id)
	}
	return c.name, c.pod, ok
}

func (l *Logs) findCtr(id string) (ctrEntry, bool) {
	if c, ok := l.ctrs[id]; ok || len(id) == 64 {
		return c, ok
	}
	var hit ctrEntry
	n := 0
	for k, c := range l.ctrs {
		if strings.HasPrefix(k, id) {
			hit, n = c, n+1
		}
	}
	if n != 1 {
		return ctrEntry{}, false
	}
	return hit, true
}

// due reports whether a directory last read at *last may be read again,
// and if so marks it read now.
func (l *Logs) due(last *time.Time) bool {
	now := l.now()
	if !last.IsZero() && now.Sub(*last) < l.MinRefresh {
		return false
	}
	*last = now
	return true
}

// readPods reads DIR/pods: a missing directory has no pods, any other
// error keeps what was known.
func (l *Logs) readPods(old map[string]podEntry) map[string]podEntry {
	dir := filepath.Join(l.dir, "pods")
	ents, err := readDir(dir, maxEntries)
	if err != nil {
		return keep(old, err)
	}
	m := make(map[string]podEntry, len(ents))
	for _, de := range ents {
		p, ok := parsePodDir(de.Name())
		if !ok || !de.IsDir() {
			continue
		}
		e := podEntry{pod: p}
		subs, _ := readDir(filepath.Join(dir, de.Name()), maxCtrDirs)
		for _, s := range subs {
			if s.IsDir() && validName(s.Name()) {
				e.ctrs, e.ctr = e.ctrs+1, s.Name()
			}
		}
		if len(subs) == maxCtrDirs {
			e.ctrs = maxCtrDirs
		}
		if e.ctrs != 1 {
			e.ctr = ""
		}
		m[strings.ReplaceAll(p.UID, "-", "")] = e
	}
	return m
}

// readCtrs reads the symlinks in DIR/containers, like readPods.
func (l *Logs) readCtrs(old map[string]ctrEntry) map[string]ctrEntry {
	dir := filepath.Join(l.dir, "containers")
	ents, err := readDir(dir, maxEntries)
	if err != nil {
		return keep(old, err)
	}
	m := make(map[string]ctrEntry, len(ents))
	for _, de := range ents {
		if de.Type()&fs.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, de.Name()))
		if err != nil {
			continue
		}
		if id, c, ok := parseLink(de.Name(), target); ok {
			m[id] = c
		}
	}
	return m
}

func keep[M any](old M, err error) M {
	var none M
	if errors.Is(err, fs.ErrNotExist) {
		return none
	}
	return old
}

// readDir returns at most n entries of dir, in directory order.
func readDir(dir string, n int) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(n)
	if err == io.EOF {
		err = nil
	}
	return ents, err
}

// parseLink parses a link <pod>_<namespace>_<container>-<id>.log to
// .../<namespace>_<pod>_<uid>/<container>/<restart>.log. The target names
// the pod and container; the link's name must agree and adds the id. A
// name the kubelet cut to 255 bytes has lost part of its id and is skipped.
func parseLink(name, target string) (string, ctrEntry, bool) {
	el := strings.Split(target, "/")
	if len(el) < 3 {
		return "", ctrEntry{}, false
	}
	p, ok := parsePodDir(el[len(el)-3])
	ctr := el[len(el)-2]
	restart, isLog := strings.CutSuffix(el[len(el)-1], ".log")
	if !ok || !validName(ctr) || !isLog || restart == "" || len(restart) > 10 ||
		strings.Trim(restart, "0123456789") != "" {
		return "", ctrEntry{}, false
	}
	base, isLog := strings.CutSuffix(name, ".log")
	id, found := strings.CutPrefix(base, p.Name+"_"+p.Namespace+"_"+ctr+"-")
	if !isLog || !found || len(id) != 64 || !isHex(id) {
		return "", ctrEntry{}, false
	}
	return id, ctrEntry{name: ctr, pod: p}, true
}

// parsePodDir parses <namespace>_<pod-name>_<pod-uid>.
func parsePodDir(s string) (Pod, bool) {
	f := strings.Split(s, "_")
	if len(f) != 3 || !validName(f[0]) || !validName(f[1]) || !validUID(f[2]) {
		return Pod{}, false
	}
	return Pod{Namespace: f[0], Name: f[1], UID: f[2]}, true
}

// validName accepts a DNS-1123 name's characters, at most maxName of them.
func validName(s string) bool {
	if s == "" || len(s) > maxName {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validUID accepts lower-case 8-4-4-4-12 hex, or 32 hex digits (a static
// pod's).
func validUID(s string) bool {
	if len(s) == 32 {
		return isHex(s)
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isHex(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
