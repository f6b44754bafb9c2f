package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/promtest"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// nameNetns names ns as `ip netns attach` does: a bind mount at
// /run/netns/NAME, gone when the test ends.
func nameNetns(t *testing.T, ns *testnet.NS) string {
	t.Helper()
	name := fmt.Sprintf("socktrace-test-%d-%d", os.Getpid(), ns.Inode)
	path := "/run/netns/" + name
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(ns.Path(), path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		t.Fatalf("bind the namespace at %s: %v", path, err)
	}
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
	return name
}

// maskPID1 is the command line that runs argv where /proc/1/ns cannot be
// read (a tmpfs over it, in a mount namespace of its own), as in a
// sandbox or a container whose PID 1 is not the host's init.
func maskPID1(argv ...string) []string {
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none /proc/1/ns && exec "$@"`, "sh"}, argv...)
}

// TestNetnsNames: a namespace is "host" only when it is the host's; one
// ip netns named is netns:NAME whether socktrace lists it with --netns
// NAME, --netns /run/netns/NAME or runs in it (ip netns exec), with
// /proc/1/ns hidden (a sandbox), or readable and socktrace's own (a
// container's init); --netns takes ip netns names as ss -N does, and
// says what it tried for one that does not exist.
func TestNetnsNames(t *testing.T) {
	for _, tool := range []string{"ip", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testnet.Skip(t, tool+" is not installed (make test installs iproute2; unshare comes with util-linux, in every Debian)")
		}
	}
	ns := testnet.New(t)
	name := nameNetns(t, ns)
	port := listen(t, ns)
	hostPort := listen(t, nil)
	bin := socktraceBin(t)
	var self unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		argv   []string
		host   bool // the listener is the test's, in the host's namespace
		wantNS string
	}{
		{"--netns NAME", []string{bin, "--once", "-o", "json", "--netns", name}, false, "netns:" + name},
		{"--netns PATH", []string{bin, "--once", "-o", "json", "--netns", "/run/netns/" + name}, false, "netns:" + name},
		{"--netns NAME, /proc/1/ns hidden", maskPID1(bin, "--once", "-o", "json", "--netns", name), false, "netns:" + name},
		{"ip netns exec, /proc/1/ns hidden", maskPID1("ip", "netns", "exec", name, bin, "--once", "-o", "json"), false, "netns:" + name},
		{"ip netns exec as PID 1 of a PID namespace", []string{"unshare", "--pid", "--fork", "--mount-proc", "ip", "netns", "exec", name, bin, "--once", "-o", "json"}, false, "netns:" + name},
		{"the host's, /proc/1/ns hidden", maskPID1(bin, "--once", "-o", "json", "sport", "=", ":"+strconv.Itoa(hostPort)), true, "host"},
		{"the host's, as PID 1 of a PID namespace", []string{"unshare", "--pid", "--fork", "--mount-proc", bin, "--once", "-o", "json", "sport", "=", ":" + strconv.Itoa(hostPort)}, true, "host"},
	}
	for _, c := range cases {
		cmd := exec.Command(c.argv[0], c.argv[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v; stderr:\n%s", c.name, err, stderr.String())
			continue
		}
		recs := parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n"))
		ino, p := ns.Inode, port
		if c.host {
			ino, p = uint32(self.Ino), hostPort
		}
		if r := listener(recs, ino, p); r == nil {
			t.Errorf("%s: no listener on port %d in namespace %d; output:\n%s", c.name, p, ino, out)
		} else if got := r.str("netns_name"); got != c.wantNS {
			t.Errorf("%s: netns_name %q, want %q", c.name, got, c.wantNS)
		}
		for _, r := range recs {
			if r.str("type") == "socket" && r.str("netns_name") == "host" && uint32(r.num("netns")) != uint32(self.Ino) {
				t.Errorf("%s: namespace %d, not the host's, named host: %v", c.name, uint32(r.num("netns")), r)
				break
			}
		}
	}

	// A live trace names the namespace the same way in its alerts.
	p := start(t, "-o", "json", "--netns", "/run/netns/"+name, "--fail-after", "1")
	refuse(t, ns, "127.0.0.1:1")
	p.waitFor(t, "a failing alert", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"alert":"failing"`)
	})
	for _, r := range parseJSON(t, p.stop(t)) {
		if r.str("type") == "alert" && r.str("netns_name") != "netns:"+name {
			t.Errorf("alert of namespace %d named %q, want netns:%s: %v", uint32(r.num("netns")), r.str("netns_name"), name, r)
		}
	}

	// The table's summary says where, and keeps its columns: the
	// destination "in netns:NAME" is wider than the column was.
	p = start(t, "-n", "--summary", "--netns", name)
	refuse(t, ns, "127.0.0.1:1")
	p.waitFor(t, "the refused connect", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), "syn-sent -> close")
	})
	lines := p.stop(t)
	head := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "STATUS ") && i > 0 && lines[i-1] == "CONNECT ATTEMPTS BY DESTINATION" {
			head = i
		}
	}
	if head < 0 || head+1 >= len(lines) || !strings.Contains(lines[head+1], "127.0.0.1:1 in netns:"+name) {
		t.Fatalf("no destination in netns:%s in the summary:\n%s", name, strings.Join(lines, "\n"))
	}
	h, row := lines[head], lines[head+1]
	proc, attempts, since := strings.Index(h, "PROCESS"), strings.Index(h, "ATTEMPTS")+len("ATTEMPTS"), strings.Index(h, "SINCE")
	if len(row) <= since || row[proc-1] != ' ' || !strings.HasPrefix(row[proc:], processComm(t)+"/") ||
		row[attempts-1] != '1' || row[attempts] != ' ' || row[since-1] != ' ' || row[since] == ' ' {
		t.Errorf("the summary's columns are not aligned:\n%s\n%s", h, row)
	}

	// socktrace ss -N takes the same names.
	if out, err := runSocktrace(t, "ss", "-tln", "-N", name); err != nil || !strings.Contains(out, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("ss -tln -N %s: %v, want the listener on port %d:\n%s", name, err, port, out)
	}

	// A name bound nowhere: the error says what was tried.
	missing := fmt.Sprintf("socktrace-no-such-netns-%d", time.Now().UnixNano())
	for _, args := range [][]string{{"--once", "--netns", missing}, {"ss", "-tln", "-N", missing}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil {
			t.Errorf("socktrace %s: succeeded, want an error; output:\n%s", strings.Join(args, " "), out)
			continue
		}
		for _, w := range []string{`no network namespace named "` + missing + `"`, "/run/netns/" + missing, "ip netns list"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("socktrace %s: error lacks %q:\n%s", strings.Join(args, " "), w, out)
			}
		}
	}
}

// TestAgentLoopbackPerNetns: with the agent's default --netns all,
// 127.0.0.1:9093 of one namespace (a server there) and of another
// (nothing listens) are two places: their series stay apart, labelled
// with each namespace's name, and Prometheus sees one failing and one
// healthy; 10.9.9.9:9093, the same address in both, stays one series.
func TestAgentLoopbackPerNetns(t *testing.T) {
	healthy, failing := testnet.New(t), testnet.New(t)
	// Both named (ip netns): a namespace no process lives in is named
	// after one that does, and the test's own main thread may be one
	// (a goroutine of ns.Run that ran on it leaves it there).
	name, failingName := nameNetns(t, healthy), nameNetns(t, failing)
	for _, ns := range []*testnet.NS{healthy, failing} {
		if out, err := exec.Command("nsenter", "--net="+ns.Path(), "ip", "addr", "add", "10.9.9.9/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Fatalf("ip addr add: %v\n%s", err, out)
		}
	}
	healthy.Serve(t, "127.0.0.1:9093", func(c net.Conn) { c.Close() })
	p, addr := startAgent(t)
	prom := promtest.Start(t, promtest.Config{Targets: []string{addr}})
	for i := 0; i < 3; i++ {
		healthy.Run(t, func() error {
			c, err := net.Dial("tcp", "127.0.0.1:9093")
			if err == nil {
				c.Close()
			}
			return err
		})
		refuse(t, failing, "127.0.0.1:9093")
		refuse(t, healthy, "10.9.9.9:9093")
		refuse(t, failing, "10.9.9.9:9093")
	}
	healthyNS, failingNS := "netns:"+name, "netns:"+failingName

	prom.WaitTargetsUp(t, 20*time.Second)
	got := prom.WaitQuery(t, `socktrace_destination_failing{daddr="127.0.0.1",dport="9093"}`, 20*time.Second,
		func(s []promtest.Sample) bool { return len(s) == 2 })
	for _, s := range got {
		want := map[string]float64{healthyNS: 0, failingNS: 1}
		if w, ok := want[s.Labels["netns"]]; !ok || s.Value != w {
			t.Errorf("socktrace_destination_failing %v = %v; want netns %s 0 and %s 1", s.Labels, s.Value, healthyNS, failingNS)
		}
	}

	// By hand, as an SRE would look.
	comm := processComm(t)
	attempts := func(daddr, netns, outcome string) string {
		return fmt.Sprintf(`socktrace_connect_attempts_total{comm=%q,daddr=%q,dport="9093",netns=%q,outcome=%q}`, comm, daddr, netns, outcome)
	}
	m := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	for key, want := range map[string]float64{
		attempts("127.0.0.1", healthyNS, "established"): 3, attempts("127.0.0.1", healthyNS, "refused"): 0,
		attempts("127.0.0.1", failingNS, "established"): 0, attempts("127.0.0.1", failingNS, "refused"): 3,
		attempts("10.9.9.9", "", "refused"): 6,
	} {
		if v, ok := m[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	for key := range m {
		if strings.Contains(key, `daddr="10.9.9.9"`) && !strings.Contains(key, `netns=""`) {
			t.Errorf("a series of a destination that is not loopback carries a namespace: %s", key)
		}
	}
	p.stop(t)
}
