package main

// Who owns a socket beyond its process: real cgroups named as each
// container runtime and systemd name them, real processes in them that
// listen, connect and accept, and the kubelet's log directories.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testcgroup"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
	"github.com/socktrace/socktrace/internal/testkit/testpods"
)

// workloadCase is a process in a cgroup of some runtime's naming, and
// what socktrace must say of its sockets.
type workloadCase struct {
	name, cgroup string
	want         map[string]any // JSON keys of the owner's identity
}

const (
	podUID    = "0f1e2d3c-4b5a-6978-8899-aabbccddeeff"
	podUID2   = "11111111-2222-3333-4444-555555555555"
	podUID3   = "99999999-8888-7777-6666-555555555555"
	serverCtr = "d0c4e2"
)

func hexID(b string) string { return strings.Repeat(b, 64)[:64] }

// workloadCases are the clients; the server is a docker container.
func workloadCases() []workloadCase {
	return []workloadCase{
		{"containerd, kubelet's systemd driver",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice/cri-containerd-" + hexID("c1") + ".scope",
			map[string]any{"container_id": hexID("c1"), "runtime": "containerd", "unit": nil,
				"namespace": "shop", "pod": "checkout-7d9f8b6c5-x2x4z", "container": "checkout"}},
		{"kubelet's cgroupfs driver",
			"/kubepods/besteffort/pod" + podUID2 + "/" + hexID("c2"),
			map[string]any{"container_id": hexID("c2"), "unit": nil,
				"namespace": "kube-system", "pod": "coredns-5d78c9869d-abcde", "container": "coredns"}},
		{"cri-o, guaranteed pod",
			"/kubepods.slice/kubepods-pod" + strings.ReplaceAll(podUID3, "-", "_") + ".slice/crio-" + hexID("c3") + ".scope",
			map[string]any{"container_id": hexID("c3"), "runtime": "cri-o",
				"namespace": "batch", "pod": "report-28391", "container": "report"}},
		{"podman", "/machine.slice/libpod-" + hexID("c4") + ".scope",
			map[string]any{"container_id": hexID("c4"), "runtime": "podman", "pod": nil, "unit": nil}},
		{"a systemd service", "/system.slice/payments.service",
			map[string]any{"unit": "payments.service", "container_id": nil, "runtime": nil, "pod": nil}},
	}
}

// podLogs lays out the kubelet's logs of the pods of workloadCases.
func podLogs(t *testing.T) string {
	dir := t.TempDir()
	testpods.Write(t, dir,
		testpods.Pod{Namespace: "shop", Name: "checkout-7d9f8b6c5-x2x4z", UID: podUID, Containers: map[string]string{"checkout": hexID("c1")}},
		testpods.Pod{Namespace: "kube-system", Name: "coredns-5d78c9869d-abcde", UID: podUID2, Containers: map[string]string{"coredns": hexID("c2")}},
		testpods.Pod{Namespace: "batch", Name: "report-28391", UID: podUID3, Containers: map[string]string{"report": hexID("c3")}},
	)
	return dir
}

// startIn runs the test binary as a connect client (target) or a server
// (listen) in cgroup path, in ns.
func startIn(t *testing.T, ns *testnet.NS, path, env string) {
	t.Helper()
	cg := testcgroup.New(t, path)
	cmd := cg.Command(ns.Path(), os.Args[0])
	cmd.Env = append(os.Environ(), env)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the cgroup's removal: runs before it.
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// hasIdentity says whether r carries every key of want with its value.
func hasIdentity(r record, want map[string]any) bool {
	for k, v := range want {
		if r[k] != v {
			return false
		}
	}
	return true
}

// TestIdentity: live, replayed, listed, filtered and in metrics.
func TestIdentity(t *testing.T) {
	ns := testnet.New(t)
	logs := podLogs(t)
	// The server exists before socktrace starts: the snapshot's owners.
	startIn(t, ns, "/system.slice/docker-"+hexID(serverCtr)+".scope", serverEnv+"=127.0.0.1:9001")
	serverID := map[string]any{"container_id": hexID(serverCtr), "runtime": "docker", "unit": nil, "pod": nil}
	cases := workloadCases()
	capFile := filepath.Join(t.TempDir(), "cap")
	p := start(t, "-o", "json", "--netns", ns.Path(), "--kubelet-log-dir", logs, "-w", capFile)
	for _, c := range cases {
		startIn(t, ns, c.cgroup, holdEnv+"=127.0.0.1:9001")
	}
	// Every client's connect carries its identity; the server's accepted
	// sockets carry the docker container's (their listener's).
	found := func(lines []string) (missing []string) {
		recs := parseJSON(t, lines)
		for _, c := range append(cases, workloadCase{"the server", "", serverID}) {
			ok := false
			for _, r := range recs {
				if r.str("type") != "transition" || !hasIdentity(r, c.want) {
					continue
				}
				if c.name == "the server" {
					ok = ok || r.str("new_state") == "syn-recv"
				} else {
					ok = ok || (r.str("new_state") == "syn-sent" && r.str("cgroup") == c.cgroup)
				}
			}
			if !ok {
				missing = append(missing, c.name)
			}
		}
		return missing
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(found(p.output())) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	lines := p.stop(t)
	if m := found(lines); len(m) > 0 {
		t.Fatalf("no transition with the identity of %v in:\n%s", m, strings.Join(lines[:min(len(lines), 40)], "\n"))
	}
	if l := listener(parseJSON(t, lines), ns.Inode, 9001); !hasIdentity(l, serverID) {
		t.Errorf("the server's listener in the snapshot: %v, want %v", l, serverID)
	}

	t.Run("replay", func(t *testing.T) {
		out, err := exec.Command(socktraceBin(t), "read", "-o", "json", capFile).Output()
		if err != nil {
			t.Fatal(err)
		}
		if m := found(strings.Split(strings.TrimSpace(string(out)), "\n")); len(m) > 0 {
			t.Errorf("the replay lacks the identity of %v", m)
		}
	})

	// The listing and the filters, with a table line for a person.
	once := func(args ...string) []record {
		t.Helper()
		out, err := exec.Command(socktraceBin(t), append([]string{"--once", "-o", "json", "--netns", ns.Path(), "--kubelet-log-dir", logs}, args...)...).Output()
		if err != nil {
			t.Fatalf("socktrace --once %v: %v", args, err)
		}
		if len(out) == 0 {
			return nil
		}
		return parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n"))
	}
	for _, f := range []struct {
		args []string
		want map[string]any
	}{
		{[]string{"--container", hexID(serverCtr)[:12], "--state", "listening"}, serverID},
		{[]string{"--pod", "shop/checkout-7d9f8b6c5-x2x4z"}, cases[0].want},
		{[]string{"--namespace", "kube-system"}, cases[1].want},
		{[]string{"pod = report-28391"}, cases[2].want},
		{[]string{"unit = payments"}, cases[4].want},
		{[]string{"--unit", "payments.service"}, cases[4].want},
		{[]string{"cgroup = " + cases[3].cgroup}, cases[3].want},
		{[]string{"container", "=", "checkout"}, cases[0].want},
	} {
		// The clients' sockets come and go: ask until one is listed.
		var recs []record
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if recs = once(f.args...); len(recs) > 0 {
				break
			}
		}
		if len(recs) == 0 {
			t.Errorf("%v: no socket listed", f.args)
		}
		for _, r := range recs {
			if !hasIdentity(r, f.want) {
				t.Errorf("%v: listed %v, want only %v", f.args, r, f.want)
			}
		}
	}
	// A pod's namespace by the pod's name; and named in the listing.
	recs := once("--netns", "pod:shop/checkout-7d9f8b6c5-x2x4z", "--state", "listening")
	if len(recs) != 1 || uint32(recs[0].num("netns")) != ns.Inode || recs[0].str("netns_name") == "" {
		t.Errorf("--netns pod:shop/checkout-7d9f8b6c5-x2x4z --state listening: %v, want the listener of namespace %d, named", recs, ns.Inode)
	}
	if out, err := runSocktrace(t, "--once", "--netns", "pod:shop/nope", "--kubelet-log-dir", logs); err == nil || !strings.Contains(out, "no process of pod shop/nope found") {
		t.Errorf("--netns of a pod that does not exist: %v: %s", err, out)
	}
	out, err := exec.Command(socktraceBin(t), "--once", "-n", "--netns", ns.Path(), "--state", "listening").Output()
	if err != nil || !strings.Contains(string(out), "container:docker/"+hexID(serverCtr)[:12]) {
		t.Errorf("--once table: no container:docker/%s on the listener (err %v):\n%s", hexID(serverCtr)[:12], err, out)
	}
}

// TestIdentityMetrics: with --workload-labels, the connect counters carry
// the pod's namespace, pod and container (and a unit's name).
func TestIdentityMetrics(t *testing.T) {
	ns := testnet.New(t)
	logs := podLogs(t)
	startIn(t, ns, "/system.slice/docker-"+hexID(serverCtr)+".scope", serverEnv+"=127.0.0.1:9001")
	_, addr := startAgent(t, "--netns", ns.Path(), "--kubelet-log-dir", logs, "--workload-labels")
	cases := workloadCases()
	startIn(t, ns, cases[0].cgroup, clientEnv+"=127.0.0.1:9001")
	startIn(t, ns, cases[4].cgroup, clientEnv+"=127.0.0.1:9001")
	comm := processComm(t)
	keys := []string{
		fmt.Sprintf(`socktrace_connect_attempts_total{comm=%q,container="checkout",daddr="127.0.0.1",dport="9001",namespace="shop",outcome="established",pod="checkout-7d9f8b6c5-x2x4z",unit=""}`, comm),
		fmt.Sprintf(`socktrace_connect_attempts_total{comm=%q,container="",daddr="127.0.0.1",dport="9001",namespace="",outcome="established",pod="",unit="payments.service"}`, comm),
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := withoutLabel(scrape(t, http.DefaultClient, "http://"+addr+"/metrics"), "netns")
		missing := 0
		for _, k := range keys {
			if got[k] < 1 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			var have []string
			for k := range got {
				if strings.HasPrefix(k, "socktrace_connect_attempts_total") {
					have = append(have, k)
				}
			}
			t.Fatalf("want %v in /metrics; have:\n%s", keys, strings.Join(have, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
