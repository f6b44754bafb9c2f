package kubelet

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	uidWeb    = "1f4b2c3d-0a1b-4c2d-8e3f-405162738495"
	uidDNS    = "2a2b2c2d-1111-4222-8333-444455556666"
	uidSide   = "3c3c3c3c-aaaa-4bbb-8ccc-dddddddddddd"
	uidStatic = "9d5ed678fe57bcca610140957afab571" // a static pod's MD5
	uidEmpty  = "4e4e4e4e-0000-4000-8000-000000000000"
	uidNew    = "5f5f5f5f-0000-4000-8000-000000000000"
)

// id returns a 64-hex container id starting with prefix.
func id(prefix string) string { return prefix + strings.Repeat("0", 64-len(prefix)) }

// node is a fake /var/log under t.TempDir().
type node struct {
	t   *testing.T
	dir string
}

func newNode(t *testing.T) node { return node{t, t.TempDir()} }

func (n node) mkdir(rel string) {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Join(n.dir, rel), 0o755); err != nil {
		n.t.Fatal(err)
	}
}

func (n node) file(rel string) {
	n.t.Helper()
	n.mkdir(filepath.Dir(rel))
	if err := os.WriteFile(filepath.Join(n.dir, rel), []byte("log\n"), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n node) symlink(target, rel string) {
	n.t.Helper()
	n.mkdir(filepath.Dir(rel))
	if err := os.Symlink(target, filepath.Join(n.dir, rel)); err != nil {
		n.t.Fatal(err)
	}
}

func podDir(ns, pod, uid string) string { return "pods/" + ns + "_" + pod + "_" + uid }

// pod makes the pod's directory and a 0.log in each container's.
func (n node) pod(ns, pod, uid string, ctrs ...string) {
	n.mkdir(podDir(ns, pod, uid))
	for _, c := range ctrs {
		n.file(podDir(ns, pod, uid) + "/" + c + "/0.log")
	}
}

// link makes the kubelet's symlink for a container, to a target under root
// (n.dir for a real one).
func (n node) link(root, ns, pod, uid, ctr, cid string) {
	n.symlink(root+"/"+podDir(ns, pod, uid)+"/"+ctr+"/0.log",
		"containers/"+pod+"_"+ns+"_"+ctr+"-"+cid+".log")
}

// cluster lays out a node with pods in several namespaces, a multi-container
// pod, dashed container names, a static pod, links with absolute targets in
// the tree and some under the host's /var/log, and junk.
func cluster(t *testing.T) node {
	n := newNode(t)
	n.pod("default", "web-7d4b9c-xk2lp", uidWeb, "nginx")
	n.pod("kube-system", "coredns-5d78c9869d-abcde", uidDNS, "coredns")
	n.pod("team-a", "api.v2", uidSide, "app", "istio-proxy", "istio-init")
	n.pod("kube-system", "etcd-node1", uidStatic, "etcd")
	n.pod("default", "starting", uidEmpty, strings.Repeat("c", 254)) // name too long
	n.link(n.dir, "default", "web-7d4b9c-xk2lp", uidWeb, "nginx", id("aaaa1111"))
	n.link(n.dir, "kube-system", "coredns-5d78c9869d-abcde", uidDNS, "coredns", id("bbbb2222"))
	n.link(n.dir, "team-a", "api.v2", uidSide, "app", id("cccc3333"))
	n.link("/var/log", "team-a", "api.v2", uidSide, "istio-proxy", id("cccc3334"))
	n.link("/var/log", "kube-system", "etcd-node1", uidStatic, "etcd", id("dddd4444"))

	// Junk in pods/: skipped.
	for _, d := range []string{
		"junk", "a_b", "ns_pod_" + uidWeb + "_x", "ns_pod_not-a-uid",
		"ns_pod_" + strings.ToUpper(uidNew), "NS_pod_" + uidNew, "ns__" + uidNew,
		"ns_pod_" + uidNew[:35] + "g", // 36 chars, not hex
	} {
		n.mkdir("pods/" + d + "/c")
	}
	n.file("pods/ns_file_" + uidNew) // a file, not a directory
	n.file("pods/" + podDir("default", "web-7d4b9c-xk2lp", uidWeb)[5:] + "/stray.txt")

	// Junk in containers/: skipped.
	n.file("containers/web_default_nginx-" + id("eeee0001") + ".log") // not a link
	n.link(n.dir, "default", "web", uidWeb, "nginx", "eeee0002")      // short id
	n.link(n.dir, "default", "web", uidWeb, "nginx", id("EEEE0003"))  // upper case
	n.symlink(n.dir+"/"+podDir("default", "web", uidWeb)+"/other/0.log",
		"containers/web_default_nginx-"+id("eeee0004")+".log") // name and target disagree
	n.symlink(n.dir+"/"+podDir("other", "web", uidWeb)+"/nginx/0.log",
		"containers/web_default_nginx-"+id("eeee0005")+".log") // namespaces disagree
	n.symlink("0.log", "containers/web_default_nginx-"+id("eeee0006")+".log")
	n.symlink("/var/log/"+podDir("default", "web", uidWeb)+"/nginx/x.log",
		"containers/web_default_nginx-"+id("eeee0007")+".log") // restart not a number
	n.symlink("/var/log/"+podDir("default", "web", "bad-uid")+"/nginx/0.log",
		"containers/web_default_nginx-"+id("eeee0008")+".log")
	n.symlink("/var/log/"+podDir("default", "web", uidWeb)+"/nginx/0.log",
		"containers/web_default_nginx-"+id("eeee0009")+".txt")
	n.symlink("/var/log/"+podDir("default", "web", uidWeb)+"/nginx/0.log",
		"containers/web_default_nginx_"+id("eeee000a")+".log") // '_' for '-'
	return n
}

func TestParsePodDir(t *testing.T) {
	long := strings.Repeat("p", 253)
	tests := []struct {
		dir  string
		want Pod
		ok   bool
	}{
		{"default_web_" + uidWeb, Pod{"default", "web", uidWeb}, true},
		{"kube-system_etcd-node1_" + uidStatic, Pod{"kube-system", "etcd-node1", uidStatic}, true},
		{"ns_" + long + "_" + uidWeb, Pod{"ns", long, uidWeb}, true},
		{"ns_" + long + "p_" + uidWeb, Pod{}, false}, // 254: too long
		{uidWeb, Pod{}, false}, // pre-1.14 layout: UID only
		{"ns_web", Pod{}, false},
		{"ns_web_" + uidWeb + "_x", Pod{}, false},
		{"ns_web_" + uidWeb[:35], Pod{}, false},
		{"ns_web_" + strings.ReplaceAll(uidWeb, "-", "_"), Pod{}, false},
		{"ns_web_" + uidStatic[:31], Pod{}, false},
		{"ns_web_" + uidStatic + "0", Pod{}, false},
		{"ns_We b_" + uidWeb, Pod{}, false},
		{"ns_web/x_" + uidWeb, Pod{}, false},
		{"_web_" + uidWeb, Pod{}, false},
	}
	for _, tt := range tests {
		got, ok := parsePodDir(tt.dir)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parsePodDir(%q) = %+v, %v; want %+v, %v", tt.dir, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPod(t *testing.T) {
	l := New(cluster(t).dir)
	tests := []struct {
		uid  string
		want Pod
		ok   bool
	}{
		{uidWeb, Pod{"default", "web-7d4b9c-xk2lp", uidWeb}, true},
		{uidDNS, Pod{"kube-system", "coredns-5d78c9869d-abcde", uidDNS}, true},
		{uidSide, Pod{"team-a", "api.v2", uidSide}, true},
		{uidStatic, Pod{"kube-system", "etcd-node1", uidStatic}, true},
		{uidEmpty, Pod{"default", "starting", uidEmpty}, true},
		// With or without dashes: a cgroup path names a static pod undashed.
		{"9d5ed678-fe57-bcca-6101-40957afab571", Pod{"kube-system", "etcd-node1", uidStatic}, true},
		{strings.ReplaceAll(uidDNS, "-", ""), Pod{"kube-system", "coredns-5d78c9869d-abcde", uidDNS}, true},
		{uidNew, Pod{}, false}, // only in junk
		{strings.ToUpper(uidWeb), Pod{}, false},
		{"", Pod{}, false},
		{"not-a-uid", Pod{}, false},
	}
	for _, tt := range tests {
		got, ok := l.Pod(tt.uid)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Pod(%q) = %+v, %v; want %+v, %v", tt.uid, got, ok, tt.want, tt.ok)
		}
	}
	if len(l.pods) != 5 {
		t.Errorf("cached %d pods, want 5: %+v", len(l.pods), l.pods)
	}
}

func TestContainerInPod(t *testing.T) {
	n := cluster(t)
	l := New(n.dir)
	tests := []struct {
		uid, want string
		ok        bool
	}{
		{uidWeb, "nginx", true}, // stray.txt is no container
		{uidStatic, "etcd", true},
		{uidSide, "", false},  // three containers
		{uidEmpty, "", false}, // its one directory's name is too long
		{uidNew, "", false},   // too much in it to tell
	}
	n.pod("default", "crowded", uidNew, "app")
	for i := range maxCtrDirs {
		n.file(podDir("default", "crowded", uidNew) + "/" + strconv.Itoa(i))
	}
	for _, tt := range tests {
		got, ok := l.ContainerInPod(tt.uid)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ContainerInPod(%q) = %q, %v; want %q, %v", tt.uid, got, ok, tt.want, tt.ok)
		}
	}
}

func TestContainer(t *testing.T) {
	n := cluster(t)
	// Two ids sharing their first 12 digits.
	n.link(n.dir, "default", "web-7d4b9c-xk2lp", uidWeb, "nginx", id("ffff00000000a"))
	n.link(n.dir, "default", "web-7d4b9c-xk2lp", uidWeb, "nginx", id("ffff00000000b"))
	l := New(n.dir)
	web := Pod{"default", "web-7d4b9c-xk2lp", uidWeb}
	side := Pod{"team-a", "api.v2", uidSide}
	tests := []struct {
		id, name string
		pod      Pod
		ok       bool
	}{
		{id("aaaa1111"), "nginx", web, true},
		{id("bbbb2222"), "coredns", Pod{"kube-system", "coredns-5d78c9869d-abcde", uidDNS}, true},
		{id("cccc3333"), "app", side, true},
		{id("cccc3334"), "istio-proxy", side, true}, // target under /var/log, absent here
		{id("dddd4444"), "etcd", Pod{"kube-system", "etcd-node1", uidStatic}, true},
		{strings.ToUpper(id("aaaa1111")), "nginx", web, true},
		{id("aaaa1111")[:12], "nginx", web, true},
		{id("cccc3334")[:20], "istio-proxy", side, true},
		{id("ffff00000000a")[:12], "", Pod{}, false}, // ambiguous
		{id("ffff00000000a")[:13], "nginx", web, true},
		{id("aaaa1111")[:11], "", Pod{}, false}, // too short
		{id("aaaa1111") + "0", "", Pod{}, false},
		{"containerd://" + id("aaaa1111"), "", Pod{}, false},
		{id("99999999"), "", Pod{}, false},
	}
	for i := 1; i <= 0xa; i++ {
		tests = append(tests, struct {
			id, name string
			pod      Pod
			ok       bool
		}{id("eeee000" + "0123456789a"[i:i+1]), "", Pod{}, false})
	}
	for _, tt := range tests {
		name, pod, ok := l.Container(tt.id)
		if name != tt.name || pod != tt.pod || ok != tt.ok {
			t.Errorf("Container(%q) = %q, %+v, %v; want %q, %+v, %v",
				tt.id, name, pod, ok, tt.name, tt.pod, tt.ok)
		}
	}
	if len(l.ctrs) != 7 {
		t.Errorf("cached %d containers, want 7: %+v", len(l.ctrs), l.ctrs)
	}
}

// clock is a fake time for Logs.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func withClock(l *Logs) (*Logs, *clock) {
	c := &clock{time.Unix(1e9, 0)}
	l.now = c.now
	return l, c
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

func TestRefresh(t *testing.T) {
	n := newNode(t)
	n.pod("default", "web", uidWeb, "nginx")
	n.link(n.dir, "default", "web", uidWeb, "nginx", id("aaaa"))
	l, c := withClock(New(n.dir))
	l.MinRefresh = time.Minute
	if _, ok := l.Pod(uidWeb); !ok {
		t.Fatal("first lookup did not read pods/")
	}
	if _, _, ok := l.Container(id("aaaa")); !ok {
		t.Fatal("first lookup did not read containers/")
	}

	// A pod arrives and the old one goes.
	n.pod("default", "new", uidNew, "app")
	n.link(n.dir, "default", "new", uidNew, "app", id("bbbb"))
	mustRemove(t, filepath.Join(n.dir, podDir("default", "web", uidWeb)))
	mustRemove(t, filepath.Join(n.dir, "containers/web_default_nginx-"+id("aaaa")+".log"))

	c.advance(time.Minute - time.Nanosecond)
	if _, ok := l.Pod(uidNew); ok {
		t.Error("new pod found before MinRefresh passed")
	}
	if _, _, ok := l.Container(id("bbbb")); ok {
		t.Error("new container found before MinRefresh passed")
	}
	if _, ok := l.Pod(uidWeb); !ok {
		t.Error("old pod forgotten before a re-read")
	}

	c.advance(time.Nanosecond)
	if p, ok := l.Pod(uidNew); !ok || p.Name != "new" {
		t.Errorf("new pod after MinRefresh: %+v, %v", p, ok)
	}
	if name, _, ok := l.Container(id("bbbb")); !ok || name != "app" {
		t.Errorf("new container after MinRefresh: %q, %v", name, ok)
	}
	if _, ok := l.Pod(uidWeb); ok {
		t.Error("removed pod still found after a re-read")
	}
	if _, _, ok := l.Container(id("aaaa")); ok {
		t.Error("removed container still found after a re-read")
	}

	// A known pod with no container directory yet re-reads for ContainerInPod.
	n.pod("default", "starting", uidEmpty)
	c.advance(time.Minute)
	if _, ok := l.ContainerInPod(uidEmpty); ok {
		t.Error("ContainerInPod true without a container directory")
	}
	n.mkdir(podDir("default", "starting", uidEmpty) + "/main")
	if _, ok := l.ContainerInPod(uidEmpty); ok {
		t.Error("ContainerInPod re-read before MinRefresh passed")
	}
	c.advance(time.Minute)
	if name, ok := l.ContainerInPod(uidEmpty); !ok || name != "main" {
		t.Errorf("ContainerInPod after MinRefresh: %q, %v", name, ok)
	}

	// MinRefresh 0 re-reads on every miss.
	l.MinRefresh = 0
	n.pod("default", "web", uidWeb, "nginx")
	if _, ok := l.Pod(uidWeb); !ok {
		t.Error("MinRefresh 0: pod not found at once")
	}
}

func TestMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, c := withClock(New(dir))
	if _, ok := l.Pod(uidWeb); ok {
		t.Error("Pod found without a directory")
	}
	if _, ok := l.ContainerInPod(uidWeb); ok {
		t.Error("ContainerInPod found without a directory")
	}
	if _, _, ok := l.Container(id("aaaa")); ok {
		t.Error("Container found without a directory")
	}

	// Kubernetes starts: still rate-limited, then found.
	n := node{t, dir}
	n.pod("default", "web", uidWeb, "nginx")
	n.link(dir, "default", "web", uidWeb, "nginx", id("aaaa"))
	if _, ok := l.Pod(uidWeb); ok {
		t.Error("missing directory re-read before MinRefresh passed")
	}
	c.advance(time.Second)
	if _, ok := l.Pod(uidWeb); !ok {
		t.Error("pod not found once the directory exists")
	}
	if _, _, ok := l.Container(id("aaaa")); !ok {
		t.Error("container not found once the directory exists")
	}

	// And goes: everything is forgotten.
	mustRemove(t, dir)
	c.advance(time.Second)
	if _, ok := l.Pod(uidNew); ok || len(l.pods) != 0 {
		t.Errorf("pods kept after the directory went: %+v", l.pods)
	}
}

func TestConcurrent(t *testing.T) {
	n := cluster(t)
	l := New(n.dir)
	l.MinRefresh = 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				l.Pod(uidWeb)
				l.Pod(uidNew)
				l.ContainerInPod(uidSide)
				l.Container(id("aaaa1111"))
				l.Container(id("99999999"))
			}
		})
	}
	wg.Wait()
	if _, ok := l.Pod(uidWeb); !ok {
		t.Error("pod lost")
	}
}
