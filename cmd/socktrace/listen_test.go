package main

// Overflowing listeners (issue 26): a listener whose accept queue is
// full drops every SYN that comes; socktrace says so live, points the
// clients' failing alert at it, counts its drops in the agent's metrics
// and replays the same alerts from a capture.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// listenOverflows is the namespace's TcpExtListenOverflows, as nstat
// reads it.
func listenOverflows(t *testing.T, ns *testnet.NS) uint64 {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "nstat", "-asz", "TcpExtListenOverflows").CombinedOutput()
	if err != nil {
		t.Fatalf("nstat: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "TcpExtListenOverflows" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("nstat: %q", l)
			}
			return n
		}
	}
	t.Fatalf("nstat printed no TcpExtListenOverflows:\n%s", out)
	return 0
}

// overflowScene: a listener with backlog 1 that never accepts (owned by
// this test process) and 20 clients (one process) connecting to it
// every 150 ms with one SYN retransmit each, until stopClients.
type overflowScene struct {
	ns          *testnet.NS
	port        int
	target      string
	client      *exec.Cmd
	before      uint64 // ListenOverflows before the clients
	stopClients func() (dropped uint64)
}

func newOverflowScene(t *testing.T, ns *testnet.NS) *overflowScene {
	if _, err := exec.LookPath("nstat"); err != nil {
		testnet.Skip(t, "nstat is not installed: apt-get install iproute2")
	}
	s := &overflowScene{ns: ns, port: ns.FullListener(t, 1)}
	s.target = fmt.Sprintf("127.0.0.1:%d", s.port)
	return s
}

// startClients starts the clients; stopClients kills them and returns
// the SYNs the kernel dropped meanwhile (nstat's ListenOverflows delta),
// once no more can come.
func (s *overflowScene) startClients(t *testing.T) {
	s.before = listenOverflows(t, s.ns)
	targets := make([]string, 20)
	for i := range targets {
		targets[i] = s.target
	}
	s.client = startClient(t, s.ns, targets...)
	s.stopClients = func() uint64 {
		s.client.Process.Kill()
		s.client.Wait() // its sockets closed: no more SYNs
		time.Sleep(100 * time.Millisecond)
		return listenOverflows(t, s.ns) - s.before
	}
}

// listenAlerts are the alert records of listeners, in order.
func listenAlerts(recs []record) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == "alert" && strings.HasPrefix(r.str("alert"), "listen-") {
			out = append(out, r)
		}
	}
	return out
}

// TestListenOverflow: the live alerts' drops equal the kernel's count;
// the clients' failing alert points at the listener; the listener
// recovers once the clients are gone; the summary connects the full
// listener and its drops; a replay of the -w capture gives the same
// alerts, JSON and table.
func TestListenOverflow(t *testing.T) {
	ns := testnet.New(t)
	s := newOverflowScene(t, ns)
	file := t.TempDir() + "/listen.st"
	p := start(t, "-o", "json", "--netns", ns.Path(), "--summary", "-w", file)
	s.startClients(t)
	p.waitForIn(t, 15*time.Second, "the clients' failing alert", alertFor("failing", s.port))
	dropped := s.stopClients()
	p.waitForIn(t, 15*time.Second, "listen-recovered", func(lines []string) bool {
		return linesWith(lines, `"alert":"listen-recovered"`) > 0
	})
	recs := parseJSON(t, p.stop(t))
	self := fmt.Sprintf("%s/%d", selfComm(), os.Getpid())

	// listen-overflow alerts, then one listen-recovered; their drops add
	// up to the kernel's.
	alerts := listenAlerts(recs)
	if len(alerts) < 2 {
		t.Fatalf("listener alerts %v, want overflows then a recovery", alerts)
	}
	var sum float64
	for i, a := range alerts {
		last := i == len(alerts)-1
		if int(a.num("sport")) != s.port || a.str("saddr") != "127.0.0.1" || a.num("netns") != float64(ns.Inode) ||
			int(a.num("pid")) != os.Getpid() || a.str("comm") != selfComm() || a.num("backlog") != 1 || a.num("accept_q") != 2 {
			t.Errorf("alert %v: want the listener 127.0.0.1:%d of %s, backlog 1, 2 waiting", a, s.port, self)
		}
		switch {
		case !last && a.str("alert") != "listen-overflow", last && a.str("alert") != "listen-recovered":
			t.Errorf("alert %d of %d is %q: want listen-overflow until the last, listen-recovered", i+1, len(alerts), a.str("alert"))
		case !last:
			if a.num("dropped") <= 0 {
				t.Errorf("listen-overflow %v: nothing dropped", a)
			}
			sum += a.num("dropped")
			if a.num("drops") != sum {
				t.Errorf("listen-overflow %v: drops %v, want %v (the sum so far)", a, a["drops"], sum)
			}
		}
	}
	if sum != float64(dropped) || alerts[len(alerts)-1].num("drops") != float64(dropped) || alerts[len(alerts)-1].num("sk_drops") != float64(dropped) {
		t.Errorf("alerts say %v SYNs dropped (recovered: drops %v, sk_drops %v); nstat's ListenOverflows rose by %d", sum,
			alerts[len(alerts)-1]["drops"], alerts[len(alerts)-1]["sk_drops"], dropped)
	}

	// The clients' failing alert points at the listener.
	cause := fmt.Sprintf("the listener %s (%s) is dropping SYNs: accept queue full, ", s.target, self)
	for _, r := range recs {
		if r.str("type") != "alert" || r.str("alert") != "failing" {
			continue
		}
		l, _ := r["listener"].(map[string]any)
		if int(r.num("dport")) != s.port || int(r.num("pid")) != s.client.Process.Pid || l == nil || int(record(l).num("sport")) != s.port ||
			!strings.Contains(r.str("last_cause"), cause) {
			t.Errorf("failing alert %v: want the client's to port %d, its listener and cause %q", r, s.port, cause)
		}
	}

	// The summary: the listener, full, with its drops.
	found := false
	for _, x := range lastSummary(t, recs)["listeners"].([]any) {
		l := record(x.(map[string]any))
		if int(l.num("sport")) == s.port {
			found = true
			if l["full"] != true || l.num("drops") != float64(dropped) || l["overflowing"] != false {
				t.Errorf("summary listener %v: want full, %d drops, no longer overflowing", l, dropped)
			}
		}
	}
	if !found {
		t.Errorf("summary listeners %v: want 127.0.0.1:%d", lastSummary(t, recs)["listeners"], s.port)
	}

	// The replay gives the same alerts.
	out, _ := readCapture(t, "-o", "json", file)
	replayed := listenAlerts(parseJSON(t, strings.Split(strings.TrimSpace(out), "\n")))
	if len(replayed) != len(alerts) {
		t.Fatalf("replay: %d listener alerts, live %d:\n%v\n%v", len(replayed), len(alerts), replayed, alerts)
	}
	for i := range alerts {
		for _, k := range []string{"time", "alert", "sport", "pid", "comm", "dropped", "drops", "sk_drops", "backlog", "accept_q"} {
			if fmt.Sprint(alerts[i][k]) != fmt.Sprint(replayed[i][k]) {
				t.Errorf("replayed alert %d: %s %v, live %v", i, k, replayed[i][k], alerts[i][k])
			}
		}
	}
	// Filtered on another port, neither is shown.
	if other, _ := readCapture(t, "-n", "--dport", strconv.Itoa(s.port+1), file); strings.Contains(other, "LISTEN") || strings.Contains(other, "FAILING") {
		t.Errorf("replay with --dport %d shows the listener's or the clients' alerts:\n%s", s.port+1, other)
	}
	if n := linesWith(strings.Split(out, "\n"), `"alert":"failing"`, cause); n != 1 {
		t.Errorf("replay: %d failing alerts pointing at the listener, want 1", n)
	}
	// Filtered on the clients' side (--state syn-sent --dport), the
	// listener's alerts still come: it is what their SYNs meet.
	table, _ := readCapture(t, "-n", "--state", "syn-sent", "--dport", strconv.Itoa(s.port), file)
	for _, want := range []string{
		fmt.Sprintf("!! LISTEN OVERFLOW %s (%s): accept queue full (2 waiting, backlog 1): ", s.target, self),
		fmt.Sprintf("ok LISTEN RECOVERED %s (%s): no SYN dropped for 5s; it dropped %d SYNs over ", s.target, self, dropped),
		cause,
	} {
		if !strings.Contains(table, want) {
			t.Errorf("replayed table lacks %q:\n%s", want, table)
		}
	}
}

// TestAgentListenOverflow: socktrace_listen_overflow_drops_total is the
// kernel's count of the SYNs the listener dropped.
func TestAgentListenOverflow(t *testing.T) {
	ns := testnet.New(t)
	s := newOverflowScene(t, ns)
	_, addr := startAgent(t, "--netns", ns.Path())
	s.startClients(t)
	time.Sleep(2 * time.Second)
	dropped := s.stopClients()
	metric := fmt.Sprintf(`socktrace_listen_overflow_drops_total{comm=%q,sport="%d"}`, processComm(t), s.port)
	deadline := time.Now().Add(5 * time.Second)
	var m map[string]float64
	for time.Now().Before(deadline) {
		if m = scrape(t, http.DefaultClient, "http://"+addr+"/metrics"); m[metric] == float64(dropped) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if dropped < 20 || m[metric] != float64(dropped) {
		t.Errorf("%s = %v, want nstat's ListenOverflows delta %d (at least 20)", metric, m[metric], dropped)
	}
}
