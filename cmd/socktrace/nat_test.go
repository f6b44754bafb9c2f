package main

// NAT backends: a Service VIP that the client's netfilter translates,
// the way kube-proxy's nftables mode does, to two backends in their own
// namespaces over veth pairs, one of which drops the port's SYNs.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

const (
	natVIP  = "10.96.0.10"
	natDead = "10.4.1.81" // its namespace drops the port's SYNs
	natLive = "10.4.1.82"
	natPort = 9092
	natSelf = "10.4.0.2" // the client
)

// natScene: the client's namespace, with a veth pair to each backend's.
type natScene struct {
	client, dead, live *testnet.NS
	// accepted: the client ports the live backend accepted, in order.
	mu       sync.Mutex
	accepted []int
}

// ipIn runs ip in ns.
func ipIn(t *testing.T, ns *testnet.NS, args ...string) {
	t.Helper()
	c := exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "ip"}, args...)...)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNATScene(t *testing.T) *natScene {
	t.Helper()
	for _, tool := range []string{"nft", "ip", "nsenter", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			testnet.Skip(t, tool+" is not installed: apt-get install nftables iproute2 util-linux conntrack")
		}
	}
	s := &natScene{client: testnet.New(t), dead: testnet.New(t), live: testnet.New(t)}
	for i, b := range []struct {
		ns   *testnet.NS
		addr string
	}{{s.dead, natDead}, {s.live, natLive}} {
		cdev, bdev := fmt.Sprintf("c%d", i), fmt.Sprintf("b%d", i)
		ipIn(t, s.client, "link", "add", cdev, "type", "veth", "peer", "name", bdev, "netns", b.ns.Path())
		ipIn(t, s.client, "link", "set", cdev, "up")
		if i == 0 {
			ipIn(t, s.client, "addr", "add", natSelf+"/32", "dev", cdev)
			// A route to the VIP, or connect() fails before NAT runs.
			ipIn(t, s.client, "route", "add", "default", "dev", cdev, "src", natSelf)
		}
		ipIn(t, s.client, "route", "add", b.addr+"/32", "dev", cdev, "src", natSelf)
		ipIn(t, b.ns, "link", "set", bdev, "up")
		ipIn(t, b.ns, "addr", "add", b.addr+"/32", "dev", bdev)
		ipIn(t, b.ns, "route", "add", natSelf+"/32", "dev", bdev)
	}
	// kube-proxy's nftables mode: DNAT of the VIP in the nat hooks.
	nft(t, s.client, fmt.Sprintf(`table ip kube-proxy {
 chain nat-output {
  type nat hook output priority -100; policy accept;
  ip daddr %[1]s tcp dport %[2]d dnat to numgen inc mod 2 map { 0 : %[3]s, 1 : %[4]s }
 }
 chain nat-prerouting {
  type nat hook prerouting priority -100; policy accept;
  ip daddr %[1]s tcp dport %[2]d dnat to numgen inc mod 2 map { 0 : %[3]s, 1 : %[4]s }
 }
}
`, natVIP, natPort, natDead, natLive))
	// The dead backend listens, but its port's SYNs are dropped.
	nft(t, s.dead, fmt.Sprintf("table inet blackhole {\n chain in {\n  type filter hook input priority 0;\n  tcp dport %d drop\n }\n}\n", natPort))
	s.dead.Serve(t, fmt.Sprintf("%s:%d", natDead, natPort), func(c net.Conn) { c.Close() })
	s.live.Serve(t, fmt.Sprintf("%s:%d", natLive, natPort), func(c net.Conn) {
		s.mu.Lock()
		s.accepted = append(s.accepted, c.RemoteAddr().(*net.TCPAddr).Port)
		s.mu.Unlock()
		go func() { // held until the client closes
			buf := make([]byte, 1)
			c.Read(buf)
			c.Close()
		}()
	})
	return s
}

// attempt is one connect to the VIP from the client's namespace.
type attempt struct {
	sport int
	err   error
	conn  net.Conn // if it connected
}

// connectVIP makes one connect to the VIP from the client namespace,
// with one SYN retransmit (a dropped SYN times out after about 3 s) or
// an abort after abortAfter (0: none).
func (s *natScene) connectVIP(t *testing.T, abortAfter time.Duration) attempt {
	t.Helper()
	var fd int
	s.client.Run(t, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1)
		}
		return err
	})
	if abortAfter > 0 {
		tv := unix.NsecToTimeval(abortAfter.Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	}
	err := unix.Connect(fd, &unix.SockaddrInet4{Port: natPort, Addr: [4]byte{10, 96, 0, 10}})
	var a attempt
	if sa, serr := unix.Getsockname(fd); serr == nil {
		a.sport = sa.(*unix.SockaddrInet4).Port
	}
	a.err = err
	if err != nil {
		unix.Close(fd)
		return a
	}
	f := os.NewFile(uintptr(fd), "vip")
	c, cerr := net.FileConn(f)
	f.Close()
	if cerr != nil {
		t.Fatal(cerr)
	}
	a.conn = c
	t.Cleanup(func() { c.Close() })
	return a
}

// conntrackBackends reads the client namespace's conntrack table with
// conntrack -L: for each connection to the VIP, by client port, the
// backend its reply comes from.
func (s *natScene) conntrackBackends(t *testing.T) map[int]string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+s.client.Path(), "conntrack", "-L", "-p", "tcp", "--orig-dst", natVIP).CombinedOutput()
	if err != nil {
		t.Fatalf("conntrack -L: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`src=\S+ dst=` + regexp.QuoteMeta(natVIP) + ` sport=(\d+) dport=\d+ .*?src=(\S+) dst=\S+ sport=(\d+)`)
	m := map[int]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if g := re.FindStringSubmatch(l); g != nil {
			p, _ := strconv.Atoi(g[1])
			m[p] = g[2] + ":" + g[3]
		}
	}
	return m
}

// TestNATBackends: every attempt to the VIP shows the backend conntrack
// sent it to (JSON, the table read back from the recording); the
// failing alert names the backend that fails and the one that answers,
// with their counts; the agent's metrics split the attempts per
// backend; a connection made before socktrace started shows its backend
// in --once and in the trace's snapshot.
func TestNATBackends(t *testing.T) {
	s := newNATScene(t)

	// Before socktrace: a connection to the VIP that stays (an attempt
	// that went to the dead backend is abandoned first).
	var pre attempt
	for range 4 {
		if pre = s.connectVIP(t, 500*time.Millisecond); pre.err == nil {
			break
		}
	}
	if pre.err != nil {
		t.Fatalf("no connection to the VIP through the live backend: %v", pre.err)
	}
	preBackend := s.conntrackBackends(t)[pre.sport]
	if preBackend != fmt.Sprintf("%s:%d", natLive, natPort) {
		t.Fatalf("the connection made before socktrace went to %q (conntrack), want the live backend", preBackend)
	}

	// --once shows its backend.
	out, err := exec.Command(socktraceBin(t), "--once", "-o", "json", "--netns", s.client.Path()).Output()
	if err != nil {
		t.Fatalf("socktrace --once: %v\n%s", err, out)
	}
	var once record
	for _, r := range parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")) {
		if r.str("type") == "socket" && int(r.num("sport")) == pre.sport {
			once = r
		}
	}
	if once == nil || once.str("daddr") != natVIP || once.str("actual_daddr") != natLive || int(once.num("actual_dport")) != natPort {
		t.Errorf("--once: the connection from port %d: %v; want daddr %s, actual_daddr %s, actual_dport %d", pre.sport, once, natVIP, natLive, natPort)
	}

	file := t.TempDir() + "/nat.st"
	p := start(t, "-o", "json", "--netns", s.client.Path(), "--summary", "-w", file)
	agent, addr := startAgent(t, "--netns", s.client.Path())

	// Ten attempts at once: numgen sends them in turn to each backend.
	const n = 10
	atts := make([]attempt, n)
	var wg sync.WaitGroup
	for i := range atts {
		wg.Add(1)
		go func() { defer wg.Done(); atts[i] = s.connectVIP(t, 0) }()
		time.Sleep(20 * time.Millisecond) // the SYNs in order
	}
	wg.Wait()
	ct := s.conntrackBackends(t)
	want := map[string][2]int{} // backend -> timed out, connected
	wantOf := map[int]string{}  // client port -> backend
	for _, a := range atts {
		b := ct[a.sport]
		if b == "" {
			t.Fatalf("conntrack has no entry for the attempt from port %d (%v):\n%v", a.sport, a.err, ct)
		}
		w := want[b]
		switch {
		case a.err == nil:
			w[1]++
		case errors.Is(a.err, unix.ETIMEDOUT):
			w[0]++
		default:
			t.Fatalf("attempt from port %d: %v, want ETIMEDOUT or a connection", a.sport, a.err)
		}
		want[b], wantOf[a.sport] = w, b
	}
	dead, live := fmt.Sprintf("%s:%d", natDead, natPort), fmt.Sprintf("%s:%d", natLive, natPort)
	t.Logf("conntrack: %v", want)
	if want[dead][1] != 0 || want[live][0] != 0 || want[dead][0] < 3 || want[live][1] < 1 {
		t.Fatalf("attempts by backend (timed out, connected) %v: want the dead one's to time out (3 at least), the live one's to connect", want)
	}
	// The live backend accepted exactly the attempts conntrack sent it.
	s.mu.Lock()
	for _, port := range s.accepted {
		if port != pre.sport && wantOf[port] != live {
			t.Errorf("the live backend accepted port %d, which conntrack says went to %q", port, wantOf[port])
		}
	}
	s.mu.Unlock()

	p.waitForIn(t, 10*time.Second, "the failing alert", alertFor("failing", natPort))
	// The agent: attempts split per backend, as conntrack says.
	metricName := func(backend, outcome string) string {
		h, port, _ := strings.Cut(backend, ":")
		return fmt.Sprintf(`socktrace_nat_connect_attempts_total{actual_daddr="%s",actual_dport="%s",daddr="%s",dport="%d",outcome="%s"}`, h, port, natVIP, natPort, outcome)
	}
	var m map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrape(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/metrics")
		if m[metricName(dead, "timeout")] == float64(want[dead][0]) && m[metricName(live, "established")] == float64(want[live][1]) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("agent: %s = %v, %s = %v; want %d, %d (conntrack)", metricName(dead, "timeout"), m[metricName(dead, "timeout")],
				metricName(live, "established"), m[metricName(live, "established")], want[dead][0], want[live][1])
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := m[metricName(dead, "established")] + m[metricName(live, "timeout")]; v != 0 {
		t.Errorf("agent: attempts counted against the wrong backend: %v", v)
	}
	agent.stop(t)

	recs := parseJSON(t, p.stop(t))
	ended := 0
	var alert, snapRow record
	for _, r := range recs {
		switch {
		case r.str("type") == "transition" && r.str("old_state") == "syn-sent" && r.str("daddr") == natVIP:
			ended++
			got := fmt.Sprintf("%s:%v", r.str("actual_daddr"), r["actual_dport"])
			if w := wantOf[int(r.num("sport"))]; got != w {
				t.Errorf("syn-sent -> %s from port %v: backend %s, conntrack says %s", r.str("new_state"), r["sport"], got, w)
			}
		case r.str("type") == "alert" && r.str("alert") == "failing" && r.str("daddr") == natVIP:
			alert = r
		case r.str("type") == "socket" && int(r.num("sport")) == pre.sport:
			snapRow = r
		}
	}
	if ended != n {
		t.Errorf("%d attempts to the VIP ended in the trace, want %d", ended, n)
	}
	if snapRow == nil || snapRow.str("actual_daddr") != natLive {
		t.Errorf("the snapshot's row of the connection made before: %v; want actual_daddr %s", snapRow, natLive)
	}
	if alert == nil {
		t.Fatal("no failing alert for the VIP")
	}
	bs, _ := alert["backends"].([]any)
	byAddr := map[string]record{}
	for _, b := range bs {
		r := record(b.(map[string]any))
		byAddr[fmt.Sprintf("%s:%v", r.str("actual_daddr"), r["actual_dport"])] = r
	}
	if d := byAddr[dead]; d == nil || d.str("status") != "failing" || failures(d).num("timeout") < 3 || d.num("successes") != 0 {
		t.Errorf("alert: the dead backend %v, want failing with 3 timeouts or more", d)
	}
	if l := byAddr[live]; l == nil || l.str("status") != "ok" || l.num("failed") != 0 || l.num("successes") < 1 {
		t.Errorf("alert: the live backend %v, want ok, answering", l)
	}
	// The summary: every attempt, per backend, as conntrack says.
	sum := destOf(lastSummary(t, recs), natPort)
	sbs, _ := sum["backends"].([]any)
	for _, b := range sbs {
		r := record(b.(map[string]any))
		k := fmt.Sprintf("%s:%v", r.str("actual_daddr"), r["actual_dport"])
		if int(failures(r).num("timeout")) != want[k][0] || int(r.num("successes")) != want[k][1] {
			t.Errorf("summary: backend %s: %v timeouts, %v successes; conntrack says %v", k, failures(r)["timeout"], r["successes"], want[k])
		}
	}
	if len(sbs) != 2 {
		t.Errorf("summary: backends %v, want 2", sbs)
	}

	// The table, read back from the recording: the attempts' backends,
	// and the alert in words.
	table, _ := readCapture(t, "-n", file)
	for _, a := range atts {
		if w := fmt.Sprintf(":%d +%s:%d->%s ", a.sport, natVIP, natPort, wantOf[a.sport]); !regexp.MustCompile(w).MatchString(table) {
			t.Errorf("the table read back lacks the attempt from port %d through %s", a.sport, wantOf[a.sport])
		}
	}
	words := regexp.MustCompile(`!! FAILING 10\.96\.0\.10:9092(?: in \S+)? fails through 10\.4\.1\.81:9092: (\d+) of (\d+) timed out; 10\.4\.1\.82:9092 answered (\d+) of (\d+) `)
	g := words.FindStringSubmatch(table)
	if g == nil {
		t.Fatalf("the table read back has no failing alert naming both backends:\n%s", table)
	}
	t.Logf("replayed: %s", g[0])
	if g[1] != g[2] || g[3] != g[4] || g[1] != strconv.Itoa(int(failures(byAddr[dead]).num("timeout"))) || g[3] != strconv.Itoa(int(byAddr[live].num("successes"))) {
		t.Errorf("the replayed alert %q disagrees with the live one's backends %v", g[0], bs)
	}
	if !strings.Contains(table, fmt.Sprintf("%s:%d->%s", natVIP, natPort, live)) {
		t.Errorf("the table read back lacks the snapshot's connection through %s", live)
	}
}

// TestNATBackendsFromPod: a pod's connects to a Service VIP are
// translated on the node, in the prerouting hook of the node's
// namespace, as kube-proxy does; socktrace runs in the node's namespace
// (a DaemonSet with hostNetwork) and traces the pod's: every attempt
// shows the backend the node's conntrack sent it to.
func TestNATBackendsFromPod(t *testing.T) {
	for _, tool := range []string{"nft", "ip", "nsenter", "conntrack", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			testnet.Skip(t, tool+" is not installed: apt-get install nftables iproute2 util-linux conntrack procps")
		}
	}
	node, pod, dead, live := testnet.New(t), testnet.New(t), testnet.New(t), testnet.New(t)
	const gw = "10.4.0.1" // the node's address, the pod's gateway
	ipIn(t, pod, "link", "add", "eth0", "type", "veth", "peer", "name", "pod0", "netns", node.Path())
	ipIn(t, pod, "link", "set", "eth0", "up")
	ipIn(t, pod, "addr", "add", natSelf+"/32", "dev", "eth0")
	ipIn(t, pod, "route", "add", gw+"/32", "dev", "eth0")
	ipIn(t, pod, "route", "add", "default", "via", gw, "dev", "eth0")
	ipIn(t, node, "link", "set", "pod0", "up")
	ipIn(t, node, "addr", "add", gw+"/32", "dev", "pod0")
	ipIn(t, node, "route", "add", natSelf+"/32", "dev", "pod0")
	for i, b := range []struct {
		ns   *testnet.NS
		addr string
	}{{dead, natDead}, {live, natLive}} {
		ndev := fmt.Sprintf("be%d", i)
		ipIn(t, node, "link", "add", ndev, "type", "veth", "peer", "name", "eth0", "netns", b.ns.Path())
		ipIn(t, node, "link", "set", ndev, "up")
		ipIn(t, node, "route", "add", b.addr+"/32", "dev", ndev, "src", gw)
		ipIn(t, b.ns, "link", "set", "eth0", "up")
		ipIn(t, b.ns, "addr", "add", b.addr+"/32", "dev", "eth0")
		ipIn(t, b.ns, "route", "add", gw+"/32", "dev", "eth0")
		ipIn(t, b.ns, "route", "add", "default", "via", gw, "dev", "eth0")
		b.ns.Serve(t, fmt.Sprintf("%s:%d", b.addr, natPort), func(c net.Conn) { c.Close() })
	}
	if out, err := exec.Command("nsenter", "--net="+node.Path(), "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v\n%s", err, out)
	}
	nft(t, node, fmt.Sprintf(`table ip kube-proxy {
 chain nat-prerouting {
  type nat hook prerouting priority -100; policy accept;
  ip daddr %[1]s tcp dport %[2]d dnat to numgen inc mod 2 map { 0 : %[3]s, 1 : %[4]s }
 }
}
`, natVIP, natPort, natDead, natLive))
	nft(t, dead, fmt.Sprintf("table inet blackhole {\n chain in {\n  type filter hook input priority 0;\n  tcp dport %d drop\n }\n}\n", natPort))

	ready := t.TempDir() + "/ready"
	p := startCmd(t, exec.Command("nsenter", "--net="+node.Path(), socktraceBin(t), "-o", "json", "--netns", pod.Path(), "--ready-file", ready),
		ready, " (in the node's namespace)")
	s := &natScene{client: pod}
	const n = 4
	atts := make([]attempt, n)
	var wg sync.WaitGroup
	for i := range atts {
		wg.Add(1)
		go func() { defer wg.Done(); atts[i] = s.connectVIP(t, 0) }()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	// The node's conntrack, as the pod's connections' translations.
	nodeScene := &natScene{client: node}
	ct := nodeScene.conntrackBackends(t)
	byBackend := map[string]int{}
	for _, a := range atts {
		byBackend[ct[a.sport]]++
		if a.err != nil && !errors.Is(a.err, unix.ETIMEDOUT) {
			t.Fatalf("attempt from port %d: %v, want ETIMEDOUT or a connection", a.sport, a.err)
		}
	}
	if byBackend[fmt.Sprintf("%s:%d", natDead, natPort)] == 0 || byBackend[fmt.Sprintf("%s:%d", natLive, natPort)] == 0 {
		t.Fatalf("the node's conntrack sent the pod's attempts to %v: want both backends", byBackend)
	}
	p.waitForIn(t, 10*time.Second, "every attempt's end", func(lines []string) bool {
		ended := 0
		for _, l := range lines {
			if strings.Contains(l, `"old_state":"syn-sent"`) {
				ended++
			}
		}
		return ended >= n
	})
	ended := 0
	for _, r := range parseJSON(t, p.stop(t)) {
		if r.str("type") != "transition" || r.str("old_state") != "syn-sent" || r.str("daddr") != natVIP {
			continue
		}
		ended++
		got := fmt.Sprintf("%s:%v", r.str("actual_daddr"), r["actual_dport"])
		if w := ct[int(r.num("sport"))]; got != w {
			t.Errorf("syn-sent -> %s from port %v: backend %s, the node's conntrack says %s", r.str("new_state"), r["sport"], got, w)
		}
	}
	if ended != n {
		t.Errorf("%d attempts to the VIP ended in the trace, want %d", ended, n)
	}
}
