package main

// The stories socktrace exists for, reproduced in a namespace: a client
// retrying a destination whose packets are dropped, a server that never
// closes, and heavy churn.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
	"github.com/socktrace/socktrace/internal/witness"
)

// clientEnv makes the test binary a connect client (see TestMain): it
// connects to each address in the list, comma separated, every 150ms,
// until killed, sending at most one SYN retransmit (TCP_SYNCNT 1: a
// dropped SYN times out after about 3 s).
const clientEnv = "SOCKTRACE_TEST_CLIENT"

// serverEnv makes the test binary a server (see TestMain): it listens on
// the address given and accepts and closes connections until killed.
const serverEnv = "SOCKTRACE_TEST_SERVER"

func TestMain(m *testing.M) {
	if targets := os.Getenv(clientEnv); targets != "" {
		connectLoop(strings.Split(targets, ","))
		return
	}
	if addr := os.Getenv(serverEnv); addr != "" {
		acceptLoop(addr)
		return
	}
	if addr := os.Getenv(holdEnv); addr != "" {
		holdLoop(addr)
		return
	}
	if spec := os.Getenv(dnsClientEnv); spec != "" {
		dnsClient(spec)
		return
	}
	if name := os.Getenv(dnsProbeEnv); name != "" {
		dnsProbe(name)
		return
	}
	if spec := os.Getenv(podmanServerEnv); spec != "" {
		podmanServer(spec)
		return
	}
	os.Exit(m.Run())
}

// holdEnv makes the test binary a client that connects to the address
// given every 200ms and keeps its connections (up to 20) open.
const holdEnv = "SOCKTRACE_TEST_HOLD"

func holdLoop(addr string) {
	var held []net.Conn
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			held = append(held, c)
		}
		if len(held) > 20 {
			held[0].Close()
			held = held[1:]
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func acceptLoop(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

func connectLoop(targets []string) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	for {
		for _, a := range targets {
			go func() {
				if c, err := d.Dial("tcp", a); err == nil {
					c.Close()
				}
			}()
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// startClient runs the connect client in the namespace.
func startClient(t *testing.T, ns *testnet.NS, targets ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("nsenter", "--net="+ns.Path(), self, "-test.run=^$")
	c.Env = append(os.Environ(), clientEnv+"="+strings.Join(targets, ","))
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// nft runs an nftables script in the namespace.
func nft(t *testing.T, ns *testnet.NS, script string) {
	t.Helper()
	c := exec.Command("nsenter", "--net="+ns.Path(), "nft", "-f", "-")
	c.Stdin = strings.NewReader(script)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// acceptAndClose serves connections on a new listener in ns until the
// test ends and returns its port.
func acceptAndClose(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	return ns.Serve(t, "127.0.0.1:0", func(c net.Conn) { c.Close() })
}

// storyScene: 127.0.0.1:9092 drops every SYN (an nftables rule), the
// healthy port accepts, the closed port refuses.
type storyScene struct {
	ns                  *testnet.NS
	healthy, closed     int
	dropped, good, shut string
}

func newStory(t *testing.T) *storyScene {
	ns := testnet.New(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testnet.Skip(t, "nft (nftables) is not installed: apt-get install nftables")
	}
	nft(t, ns, "table inet blackhole {\n chain in {\n  type filter hook input priority 0;\n  tcp dport 9092 drop\n }\n}\n")
	s := &storyScene{ns: ns, healthy: acceptAndClose(t, ns)}
	// A port nobody listens on: take one and let it go.
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		s.closed = ln.Addr().(*net.TCPAddr).Port
		return ln.Close()
	})
	s.dropped = "127.0.0.1:9092"
	s.good = fmt.Sprintf("127.0.0.1:%d", s.healthy)
	s.shut = fmt.Sprintf("127.0.0.1:%d", s.closed)
	return s
}

func alertFor(kind string, port int) func([]string) bool {
	return func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"alert"`) && strings.Contains(l, `"alert":"`+kind+`"`) && strings.Contains(l, fmt.Sprintf(`"dport":%d,`, port)) {
				return true
			}
		}
		return false
	}
}

// lastSummary returns the last summary record.
func lastSummary(t *testing.T, recs []record) record {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].str("type") == "summary" {
			return recs[i]
		}
	}
	t.Fatalf("no summary record")
	return nil
}

func destOf(sum record, port int) record {
	ds, _ := sum["destinations"].([]any)
	for _, d := range ds {
		if r := record(d.(map[string]any)); int(r.num("dport")) == port {
			return r
		}
	}
	return nil
}

func failures(d record) record { m, _ := d["failures"].(map[string]any); return record(m) }

// checkStory checks the summary's verdict on each destination.
func checkStory(t *testing.T, s *storyScene, recs []record, client int) {
	t.Helper()
	sum := lastSummary(t, recs)
	dropped, good, shut := destOf(sum, 9092), destOf(sum, s.healthy), destOf(sum, s.closed)
	if dropped == nil || good == nil || shut == nil {
		t.Fatalf("summary lacks a destination: %v", sum["destinations"])
	}
	for _, c := range []struct {
		name   string
		d      record
		status string
		cause  string
	}{
		{"dropped", dropped, "failing", "timeout"},
		{"closed", shut, "failing", "refused"},
		{"healthy", good, "ok", ""},
	} {
		d := c.d
		if d.str("status") != c.status || int(d.num("pid")) != client || d.str("comm") != selfComm() {
			t.Errorf("%s destination: status %q pid %v comm %v, want %q, client pid %d", c.name, d.str("status"), d["pid"], d["comm"], c.status, client)
		}
		f := failures(d)
		if c.cause == "" {
			if d.num("failed") != 0 || d.num("successes") < 3 || d.num("streak") != 0 || d["last_success"] == nil {
				t.Errorf("%s destination: %v, want only successes", c.name, d)
			}
			continue
		}
		if f.num(c.cause) < 3 || f.num(c.cause) != d.num("failed") || d.num("successes") != 0 || d.num("streak") != d.num("failed") || d["last_success"] != nil || d["failing_since"] == nil || d.str("last_outcome") != c.cause {
			t.Errorf("%s destination: %v, want 3 or more failures, all %s, none succeeded", c.name, d, c.cause)
		}
	}
	if dropped.num("in_flight") < 1 {
		t.Errorf("dropped destination: %v attempts in flight, want the ones still retrying", dropped["in_flight"])
	}
	// The alerts say the same, once per destination.
	n := map[int]int{}
	for _, r := range recs {
		if r.str("type") == "alert" {
			if r.str("alert") != "failing" || int(r.num("pid")) != client {
				t.Errorf("unexpected alert %v", r)
			}
			n[int(r.num("dport"))]++
		}
	}
	if n[9092] != 1 || n[s.closed] != 1 || len(n) != 2 {
		t.Errorf("failing alerts by port: %v, want one for 9092 and one for %d", n, s.closed)
	}
}

// TestStoryStartedBefore: socktrace runs first; the client starts
// retrying; both broken destinations turn failing with their cause.
func TestStoryStartedBefore(t *testing.T) {
	s := newStory(t)
	p := start(t, "-o", "json", "--netns", s.ns.Path(), "--summary", "--no-snapshot")
	client := startClient(t, s.ns, s.dropped, s.good, s.shut)
	p.waitForIn(t, 15*time.Second, "the dropped destination to turn failing", alertFor("failing", 9092))
	// Stop socktrace first: killing the client aborts its attempts.
	recs := parseJSON(t, p.stop(t))
	checkStory(t, s, recs, client.Process.Pid)
	// The ring buffer: its default size, and the most it held, which a
	// few transitions made more than nothing and less than all of it.
	ring, _ := lastSummary(t, recs)["ring"].(map[string]any)
	if size, peak := ring["size_bytes"], ring["peak_bytes"]; size != float64(8<<20) || peak.(float64) <= 0 || peak.(float64) > size.(float64)/2 {
		t.Errorf("summary ring %v: want size_bytes 8388608 and a small peak_bytes above 0", ring)
	}
}

// TestSummaryNamespaceGone: the namespace traced goes away (the last
// holder lets go) before the end; the summary still comes, its pressure
// figures from the history, and stderr says why.
func TestSummaryNamespaceGone(t *testing.T) {
	ns := testnet.New(t)
	p := start(t, "-o", "json", "--netns", ns.Path(), "--summary")
	ns.Close() // its path is gone with it
	recs := parseJSON(t, p.stop(t))
	if sum := lastSummary(t, recs); sum["ring"] == nil {
		t.Errorf("summary without ring: %v", sum)
	}
	if !strings.Contains(p.stderr.String(), "from the trace's history instead") {
		t.Errorf("stderr %q: want it to say the summary's pressure figures come from the history", p.stderr.String())
	}
}

// TestStoryStartedAfter: the client has been retrying for a while when
// socktrace starts: its pending SYN_SENT sockets come from the snapshot,
// with the client as their owner, and the verdict is the same.
func TestStoryStartedAfter(t *testing.T) {
	s := newStory(t)
	client := startClient(t, s.ns, s.dropped, s.good, s.shut)
	time.Sleep(1500 * time.Millisecond)
	p := start(t, "-o", "json", "--netns", s.ns.Path(), "--summary")
	p.waitForIn(t, 15*time.Second, "the dropped destination to turn failing", alertFor("failing", 9092))
	recs := parseJSON(t, p.stop(t))
	pending := 0
	for _, r := range recs {
		if r.str("type") == "socket" && r.str("state") == "syn-sent" {
			if int(r.num("dport")) != 9092 || int(r.num("pid")) != client.Process.Pid {
				t.Errorf("snapshot syn-sent socket %v, want the client's, to 9092", r)
			}
			pending++
		}
	}
	if pending < 3 {
		t.Errorf("snapshot listed %d sockets in syn-sent, want the client's attempts in flight (about 10)", pending)
	}
	checkStory(t, s, recs, client.Process.Pid)
	// The table view says it at a glance.
	out, err := exec.Command(socktraceBin(t), "--netns", s.ns.Path(), "--duration", "10ms", "--summary", "-n").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "CONNECT ATTEMPTS BY DESTINATION") {
		t.Errorf("table summary:\n%s", out)
	}
}

// TestStoryTable: the table view of a failing destination, alert line
// and summary, read as a person would.
func TestStoryTable(t *testing.T) {
	s := newStory(t)
	// Without --summary, the table still ends with the failing
	// destinations.
	p := start(t, "-n", "--netns", s.ns.Path(), "--state", "syn-sent", "--dport", strconv.Itoa(s.closed))
	client := startClient(t, s.ns, s.shut)
	p.waitFor(t, "the alert line", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), "FAILING")
	})
	client.Process.Kill()
	client.Wait()
	out := strings.Join(p.stop(t), "\n")
	alert := fmt.Sprintf("!! FAILING %s (%s/%d): 3 connects failed in a row (3 refused), failing since ", s.shut, selfComm(), client.Process.Pid)
	if !strings.Contains(out, alert) {
		t.Errorf("no alert line %q in:\n%s", alert, out)
	}
	row := fmt.Sprintf("FAILING   %-28s %-20s", s.shut, fmt.Sprintf("%s/%d", selfComm(), client.Process.Pid))
	if !strings.Contains(out, "CONNECT FAILURES BY DESTINATION") || !strings.Contains(out, row) || !strings.Contains(out, "never connected") {
		t.Errorf("no summary row %q in:\n%s", row, out)
	}
	// Only transitions into syn-sent are shown; the failures are counted.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "syn-sent -> close") {
			t.Errorf("--state syn-sent showed %q", l)
		}
	}
}

// neverCloses makes n connections to a server in the test process that
// never closes them after the peer's FIN: they sit in CLOSE_WAIT.
func neverCloses(t *testing.T, ns *testnet.NS, n int) int {
	t.Helper()
	var port int
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		port = ln.Addr().(*net.TCPAddr).Port
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			mu.Lock()
			held = append(held, s)
			mu.Unlock()
			c.Close()
		}
		return nil
	})
	return port
}

func closeWaitOf(t *testing.T, sum record) []record {
	t.Helper()
	var out []record
	cw, _ := sum["close_wait"].([]any)
	for _, x := range cw {
		out = append(out, record(x.(map[string]any)))
	}
	return out
}

// TestCloseWaitLeak: sockets the application never closes are counted
// per process, whether they were in CLOSE_WAIT before socktrace started
// or went there during the trace; SIGUSR1 asks for a summary mid-trace.
func TestCloseWaitLeak(t *testing.T) {
	ns := testnet.New(t)
	neverCloses(t, ns, 5) // before socktrace
	p := start(t, "-o", "json", "--netns", ns.Path(), "--close-wait-after", "300ms")
	neverCloses(t, ns, 3) // during the trace
	time.Sleep(500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGUSR1)
	p.waitFor(t, "the summary asked for with SIGUSR1", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"type":"summary"`)
	})
	sum := lastSummary(t, parseJSON(t, p.stop(t)))
	cw := closeWaitOf(t, sum)
	if len(cw) != 1 {
		t.Fatalf("close_wait %v, want one process", cw)
	}
	l := cw[0]
	if int(l.num("pid")) != os.Getpid() || l.str("comm") != selfComm() || l.num("sockets") != 8 || l["oldest_at_least"] != true {
		t.Errorf("close_wait %v, want this process (%d) with 8 sockets, the oldest from before the trace", l, os.Getpid())
	}
	peers, _ := l["peers"].([]any)
	if len(peers) != 3 {
		t.Errorf("peers %v, want the 3 most common (one socket each)", peers)
	}

	// Started after, with a threshold longer than the trace: none count.
	out, err := exec.Command(socktraceBin(t), "-o", "json", "--netns", ns.Path(), "--summary", "--duration", "200ms", "--close-wait-after", "1h").Output()
	if err != nil {
		t.Fatal(err)
	}
	if cw := closeWaitOf(t, lastSummary(t, parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")))); len(cw) != 0 {
		t.Errorf("with --close-wait-after 1h: %v, want none", cw)
	}
	// The table.
	out, err = exec.Command(socktraceBin(t), "-n", "--netns", ns.Path(), "--summary", "--duration", "300ms", "--close-wait-after", "100ms").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%-24s %7d", fmt.Sprintf("%s/%d", selfComm(), os.Getpid()), 8)
	if !strings.Contains(string(out), want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
}

// TestChurnBounded: many short connections; the history keeps the cap
// and counts exactly what it evicted, and socktrace's memory stays small.
func TestChurnBounded(t *testing.T) {
	ns := testnet.New(t)
	const conns, cap = 2000, 100
	port := acceptAndClose(t, ns) // listed by the snapshot; live throughout
	p := start(t, "-o", "json", "--netns", ns.Path(), "--summary", "--history", strconv.Itoa(cap))
	ns.Run(t, func() error {
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
	// Each connection is two sockets, and each ends with -> close
	// (unless the kernel skipped it: then it is counted as skipped).
	p.waitForIn(t, 30*time.Second, "every socket to close", func(lines []string) bool {
		n := 0
		for _, l := range lines {
			switch {
			case strings.Contains(l, `"new_state":"close"`):
				n++
			case strings.Contains(l, `"type":"skipped"`):
				var r record
				json.Unmarshal([]byte(l), &r)
				n += int(r.num("count"))
			}
		}
		return n >= 2*conns
	})
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	recs := parseJSON(t, p.stop(t))
	sum := lastSummary(t, recs)
	h, _ := sum["history"].(map[string]any)
	hist := record(h)
	// A close the kernel skipped leaves its socket live: allow for it.
	skipped := sum.num("skipped")
	if hist.num("live") < 1 || hist.num("live") > 1+skipped || hist.num("closed") != cap || hist.num("closed_cap") != cap ||
		hist.num("evicted") > 2*conns-cap || hist.num("evicted") < 2*conns-cap-skipped {
		t.Errorf("history %v (kernel skipped %v), want 1 live (the listener), %d closed kept, %d evicted", hist, skipped, cap, 2*conns-cap)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			t.Logf("socktrace peak resident memory after %d connections: %d KiB", conns, kb)
			if kb > 64<<10 {
				t.Errorf("peak resident memory %d KiB, want under 64 MiB", kb)
			}
		}
	}
}

// TestNothingLostSilently: under heavy churn from several goroutines,
// every transition is either shown or accounted for: lost (ring full) or
// skipped by the kernel (its program was already running on that CPU).
func TestNothingLostSilently(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	// An independent count of what the kernel runs BPF programs on the
	// tracepoint for in the namespace: rarely it runs none for a
	// connection's closing pair (bench/README.md, "Reading the counts"),
	// and then no BPF tool can report it.
	wit, err := witness.Open(witness.Filter{Netns: ns.Inode}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer wit.Close()
	p := start(t, "-o", "json", "--no-snapshot", "--netns", ns.Path(), "--ring-size", "64K")
	const workers, each = 4, 1000
	churn(t, ns, port, workers, each)
	// The server's last closes (late on a busy machine), and a loss check.
	want := float64(workers * each * 10)
	accounted := func(lines []string) (shown, lost, skipped float64) {
		for _, l := range lines {
			switch {
			case strings.Contains(l, `"type":"transition"`):
				shown++
			case strings.Contains(l, `"type":"lost"`), strings.Contains(l, `"type":"skipped"`):
				var r record
				json.Unmarshal([]byte(l), &r)
				if r.str("type") == "lost" {
					lost += r.num("count")
				} else {
					skipped += r.num("count")
				}
			}
		}
		return
	}
	// Wait for all the load made, or for all the witness saw once it
	// has seen nothing new for a second.
	deadline := time.Now().Add(15 * time.Second)
	var seen, still uint64
	for time.Now().Before(deadline) {
		s, l, k := accounted(p.output())
		if s+l+k >= want {
			break
		}
		if c, err := wit.Counts(); err == nil {
			if c.Seen() != seen {
				seen, still = c.Seen(), 0
			} else if still++; still >= 10 && s+l+k >= float64(seen) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a last loss check
	var shown, lost, skipped float64
	for _, r := range parseJSON(t, p.stop(t)) {
		switch r.str("type") {
		case "transition":
			shown++
		case "lost":
			lost += r.num("count")
		case "skipped":
			skipped += r.num("count")
		}
	}
	c, err := wit.Counts()
	if err != nil {
		t.Fatal(err)
	}
	// The listener's birth came before the witness; its own misses are
	// of any socket of the host.
	witnessed, misses := float64(c.Seen()), float64(c.SetState.Misses)
	t.Logf("%v transitions made, %v seen by the witness (skipped %v times host-wide): %v shown, %v lost, %v skipped by the kernel",
		want, witnessed, misses, shown, lost, skipped)
	if shown+lost+skipped < witnessed {
		t.Errorf("%v shown + %v lost + %v skipped does not account for the %v the witness saw", shown, lost, skipped, witnessed)
	}
	if shown+lost > witnessed+misses {
		t.Errorf("%v shown + %v lost: more than the %v the witness saw (+%v witness misses)", shown, lost, witnessed, misses)
	}
	if witnessed+misses < want {
		// On the VM this was built on, no BPF program runs while its
		// supervisor (PID 1) is the current task, softirqs included
		// (bench/README.md, "Reading the counts").
		t.Logf("no BPF program was run for %v of the transitions made; sockets the witness saw no close of: %+v", want-witnessed-misses, c.Open)
	}
}
