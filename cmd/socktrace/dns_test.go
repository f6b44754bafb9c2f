package main

// The incident socktrace was made for: Kafka's DNS record moved, the
// application kept the old address and keeps failing to connect to it.
// Reproduced with Debian's dnsmasq in a named network namespace, whose
// resolv.conf `ip netns exec` provides, and real clients resolving with
// the Go resolver as any application does.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testdns"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// dnsClientEnv makes the test binary a DNS-using client (see TestMain):
// "once:NAME:PORT" resolves NAME once, says "resolved ADDR" on stdout,
// waits for a line on stdin, then connects to that address every 300ms
// (dnsClientEveryEnv if set) with a 500ms timeout, forever (an
// application that cached the entry); "each:NAME:PORT" resolves before
// every connect. It asks the resolvers of /etc/resolv.conf, or the
// server at dnsServerEnv's address if set.
const (
	dnsClientEnv      = "SOCKTRACE_TEST_DNS_CLIENT"
	dnsClientEveryEnv = "SOCKTRACE_TEST_DNS_CLIENT_EVERY"
	dnsServerEnv      = "SOCKTRACE_TEST_DNS_SERVER"
)

func dnsClient(spec string) {
	parts := strings.Split(spec, ":")
	mode, name, port := parts[0], parts[1], parts[2]
	every := 300 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv(dnsClientEveryEnv)); err == nil {
		every = d
	}
	resolver := net.DefaultResolver
	if server := os.Getenv(dnsServerEnv); server != "" {
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, server)
		}}
	}
	resolve := func() string {
		for {
			addrs, err := resolver.LookupHost(context.Background(), name)
			if err == nil && len(addrs) > 0 {
				return addrs[0]
			}
			fmt.Fprintln(os.Stderr, "resolve:", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	addr := resolve()
	fmt.Println("resolved", addr)
	if mode == "once" {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	for {
		if mode == "each" {
			addr = resolve()
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, port), 500*time.Millisecond); err == nil {
			c.Close()
		}
		time.Sleep(every)
	}
}

// dnsScene: a named namespace with 10.4.1.80 and 10.4.1.81 on lo, SYNs
// to 10.4.1.80:9092 dropped, a server on 10.4.1.81:9092, and dnsmasq on
// 127.0.0.1:53 answering kafka.example.com (and its alias
// broker.example.com) from a hosts file, TTL 60s.
type dnsScene struct {
	name, path string // ip netns name, /run/netns/NAME
	hosts      string // dnsmasq's hosts file
	dnsmasq    *exec.Cmd
}

func newDNSScene(t *testing.T) *dnsScene {
	t.Helper()
	testnet.RequireRoot(t)
	for _, tool := range []string{"dnsmasq", "ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			testnet.Skip(t, tool+" is not installed (make test installs dnsmasq-base, iproute2, nftables)")
		}
	}
	s := &dnsScene{name: fmt.Sprintf("socktrace-dns-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	s.path = "/run/netns/" + s.name
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", s.name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", s.name).Run()
		os.RemoveAll("/etc/netns/" + s.name)
	})
	in := func(args ...string) { t.Helper(); run(append([]string{"ip", "netns", "exec", s.name}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "addr", "add", "10.4.1.80/32", "dev", "lo")
	in("ip", "addr", "add", "10.4.1.81/32", "dev", "lo")
	c := exec.Command("ip", "netns", "exec", s.name, "nft", "-f", "-")
	c.Stdin = strings.NewReader("table inet stale {\n chain in {\n  type filter hook input priority 0;\n  ip daddr 10.4.1.80 tcp dport 9092 drop\n }\n}\n")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	// The namespace's own resolv.conf: ip netns exec mounts it over
	// /etc/resolv.conf for what runs there.
	if err := os.MkdirAll("/etc/netns/"+s.name, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/netns/"+s.name+"/resolv.conf", []byte("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s.hosts = filepath.Join(dir, "hosts")
	s.setHosts(t, "10.4.1.80")
	s.dnsmasq = exec.Command("ip", "netns", "exec", s.name, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--addn-hosts="+s.hosts, "--cname=broker.example.com,kafka.example.com", "--local-ttl=60",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--port=53", "--user=root", "--pid-file="+filepath.Join(dir, "pid"),
		"--conf-file=/dev/null", "--log-facility=-")
	var logs strings.Builder
	s.dnsmasq.Stderr = &logs
	if err := s.dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.dnsmasq.Process.Kill()
		s.dnsmasq.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", logs.String())
		}
	})
	// The server that took over.
	srv := exec.Command("ip", "netns", "exec", s.name, os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), serverEnv+"=10.4.1.81:9092")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	// dnsmasq answers once it is up.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s.resolves(t) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq does not answer; its log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// resolves says whether dnsmasq answers kafka.example.com yet.
func (s *dnsScene) resolves(t *testing.T) bool {
	c := exec.Command("ip", "netns", "exec", s.name, os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), dnsProbeEnv+"=kafka.example.com")
	return c.Run() == nil
}

// dnsProbeEnv makes the test binary resolve a name once and exit 0 if it
// resolved.
const dnsProbeEnv = "SOCKTRACE_TEST_DNS_PROBE"

func dnsProbe(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, name); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// setHosts points kafka.example.com at addr, and tells a running dnsmasq
// (SIGHUP: it reads its hosts files again).
func (s *dnsScene) setHosts(t *testing.T, addr string) {
	t.Helper()
	if err := os.WriteFile(s.hosts, []byte(addr+" kafka.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.dnsmasq != nil {
		if err := s.dnsmasq.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
}

// startDNSClient runs a client (see dnsClient) in the namespace and
// waits until it resolved.
func (s *dnsScene) startDNSClient(t *testing.T, spec string) (*exec.Cmd, string, func()) {
	t.Helper()
	return startDNSClientCmd(t, exec.Command("ip", "netns", "exec", s.name, os.Args[0], "-test.run=^$"), spec)
}

// startDNSClientCmd runs c, the test binary, as a client (see dnsClient;
// env adds to its environment) and waits until it resolved; it returns
// the address it got and a function that lets it go on.
func startDNSClientCmd(t *testing.T, c *exec.Cmd, spec string, env ...string) (*exec.Cmd, string, func()) {
	t.Helper()
	c.Env = append(append(os.Environ(), dnsClientEnv+"="+spec), env...)
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("client %s: %v", spec, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "resolved "))
	return c, addr, func() { fmt.Fprintln(stdin, "go") }
}

func alertsOf(recs []record) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == "alert" {
			out = append(out, r)
		}
	}
	return out
}

// checkStale checks a stale-dns alert for the client pid that kept
// 10.4.1.80 after kafka.example.com moved to 10.4.1.81.
func checkStale(t *testing.T, a record, pid int, seenBy string) {
	t.Helper()
	cur, _ := a["current_addrs"].([]any)
	if a.str("alert") != "stale-dns" || a.str("dns_name") != "kafka.example.com" || a.str("daddr") != "10.4.1.80" ||
		int(a.num("dport")) != 9092 || int(a.num("pid")) != pid || a.num("ttl_s") != 60 || a.str("reason") != "failing" ||
		len(cur) != 1 || cur[0] != "10.4.1.81" || a["resolved_at"] == nil || a["current_seen_at"] == nil ||
		!strings.HasPrefix(a.str("current_seen_by"), seenBy) || int(a.num("resolved_by_pid")) != pid || a.str("dns_server") != "127.0.0.1:53" {
		t.Errorf("stale-dns alert: %v\nwant kafka.example.com, 10.4.1.80:9092, pid %d, TTL 60, now 10.4.1.81 seen by %s", a, pid, seenBy)
	}
}

// TestStaleDNSStory: socktrace's first alert names the stale address,
// the name it came from and the name's current address, live and from
// the capture; a client that re-resolves (through a CNAME) raises none.
func TestStaleDNSStory(t *testing.T) {
	s := newDNSScene(t)
	capture := filepath.Join(t.TempDir(), "cap")
	p := start(t, "-o", "json", "--dport", "9092", "--no-snapshot", "-w", capture)
	stale, addr, goOn := s.startDNSClient(t, "once:kafka.example.com:9092")
	if addr != "10.4.1.80" {
		t.Fatalf("client resolved %s", addr)
	}
	// The record moves; the client keeps the old address.
	s.setHosts(t, "10.4.1.81")
	goOn()
	fresh, addr2, _ := s.startDNSClient(t, "each:broker.example.com:9092")
	if addr2 != "10.4.1.81" {
		t.Fatalf("re-resolving client got %s", addr2)
	}
	p.waitForIn(t, 20*time.Second, "a failing alert", alertFor("failing", 9092))
	lines := p.stop(t)
	recs := parseJSON(t, lines)
	alerts := alertsOf(recs)
	if len(alerts) == 0 {
		t.Fatal("no alerts")
	}
	checkStale(t, alerts[0], stale.Process.Pid, "socktrace")
	for _, a := range alerts {
		if a.str("alert") == "stale-dns" && int(a.num("pid")) == fresh.Process.Pid {
			t.Errorf("stale-dns for the client that re-resolves: %v", a)
		}
		if a.str("alert") == "failing" && a.str("dns_name") != "kafka.example.com" {
			t.Errorf("failing alert without the name: %v", a)
		}
	}
	// Transitions carry the name each client resolved.
	names := map[string]bool{}
	for _, r := range recs {
		if r.str("type") == "transition" && int(r.num("dport")) == 9092 {
			names[fmt.Sprintf("%d %s %v", int(r.num("pid")), r.str("daddr"), r["dns_name"])] = true
		}
	}
	for _, want := range []string{
		fmt.Sprintf("%d 10.4.1.80 kafka.example.com", stale.Process.Pid),
		fmt.Sprintf("%d 10.4.1.81 broker.example.com", fresh.Process.Pid),
	} {
		if !names[want] {
			t.Errorf("no transition of %q; seen %v", want, slices.Sorted(mapsKeys(names)))
		}
	}

	// The capture replays to the same alerts.
	out, err := exec.Command(socktraceBin(t), "read", "-o", "json", capture).Output()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	replayed := alertsOf(parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")))
	if len(replayed) < len(alerts) {
		t.Fatalf("replay: %d alerts, live %d", len(replayed), len(alerts))
	}
	for i := range alerts {
		if fmt.Sprint(replayed[i]) != fmt.Sprint(alerts[i]) {
			t.Errorf("replayed alert %d:\n%v\nlive:\n%v", i, replayed[i], alerts[i])
		}
	}

	// The table says it in a sentence.
	tab, err := exec.Command(socktraceBin(t), "read", "-n", capture).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("!! STALE DNS %s/%d connects to 10.4.1.80:9092, which it got from kafka.example.com at ", selfComm(), stale.Process.Pid)
	if !strings.Contains(string(tab), want) || !strings.Contains(string(tab), "(TTL 60s); kafka.example.com now resolves to 10.4.1.81 (seen ") ||
		!strings.Contains(string(tab), "kafka.example.com(10.4.1.80):9092") {
		t.Errorf("table:\n%s\nwant a line with %q", tab, want)
	}
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestStaleDNSPassive: socktrace does not ask; another process resolves
// the name after it moved, and that answer is the evidence.
func TestStaleDNSPassive(t *testing.T) {
	s := newDNSScene(t)
	p := start(t, "-o", "json", "--dport", "9092", "--no-snapshot", "--no-dns-lookup")
	stale, _, goOn := s.startDNSClient(t, "once:kafka.example.com:9092")
	s.setHosts(t, "10.4.1.81")
	goOn()
	fresh, _, _ := s.startDNSClient(t, "each:kafka.example.com:9092")
	p.waitForIn(t, 20*time.Second, "a stale-dns alert", alertFor("stale-dns", 9092))
	recs := parseJSON(t, p.stop(t))
	for _, a := range alertsOf(recs) {
		if a.str("alert") == "stale-dns" {
			checkStale(t, a, stale.Process.Pid, fmt.Sprintf("%s/%d", selfComm(), fresh.Process.Pid))
			return
		}
	}
}

// TestStaleDNSAgent: the agent counts the stale destination, and what
// passive DNS took in.
func TestStaleDNSAgent(t *testing.T) {
	s := newDNSScene(t)
	_, addr := startAgent(t)
	stale, _, goOn := s.startDNSClient(t, "once:kafka.example.com:9092")
	s.setHosts(t, "10.4.1.81")
	goOn()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := scrape(t, c, "http://"+addr+"/metrics")
		if m["socktrace_stale_dns_destinations"] == 1 {
			if m[`socktrace_dns_answers_total{result="taken"}`] < 2 || m[`socktrace_dns_lookups_total{result="sent"}`] < 1 ||
				m[`socktrace_dns_answers_total{result="lost"}`] != 0 {
				t.Errorf("DNS counters: taken %v, lookups sent %v, lost %v", m[`socktrace_dns_answers_total{result="taken"}`],
					m[`socktrace_dns_lookups_total{result="sent"}`], m[`socktrace_dns_answers_total{result="lost"}`])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socktrace_stale_dns_destinations never 1 (client %d); metrics: %v", stale.Process.Pid, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDNSUnderIPNetnsExec: started as `ip netns exec NS socktrace`,
// whose fresh /sys has no cgroup mounts, socktrace still sees the DNS
// answers (defect 7 of issue 24): destinations carry their names, and
// nothing says passive DNS is off.
func TestDNSUnderIPNetnsExec(t *testing.T) {
	s := newDNSScene(t)
	ready := filepath.Join(t.TempDir(), "ready")
	p := startCmd(t, exec.Command("ip", "netns", "exec", s.name, socktraceBin(t), "-o", "json", "--dport", "9092", "--no-snapshot",
		"--ready-file", ready), ready, " under ip netns exec")
	fresh, addr, _ := s.startDNSClient(t, "each:broker.example.com:9092")
	if addr != "10.4.1.80" {
		t.Fatalf("client resolved %s", addr)
	}
	want := fmt.Sprintf(`"pid":%d,`, fresh.Process.Pid)
	p.waitForIn(t, 10*time.Second, "a connect named broker.example.com", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"transition"`) && strings.Contains(l, want) && strings.Contains(l, `"dns_name":"broker.example.com"`) {
				return true
			}
		}
		return false
	})
	p.stop(t)
	if strings.Contains(p.stderr.String(), "DNS") || strings.Contains(p.stderr.String(), "cgroup") {
		t.Errorf("stderr:\n%s", p.stderr.String())
	}
}

// TestStaleDNSPrompt: while connects keep failing, stale-dns comes
// within 2 s of the record moving, in both orders (defect 10 of issue
// 24): the name moves, then the broker dies (socktrace's first lookup
// tells); the broker dies, then the name moves (socktrace's first
// lookup saw the old answer: it asks again once that answer's TTL ran
// out, where it used to wait 30 s). The server's TTL is 1 s.
func TestStaleDNSPrompt(t *testing.T) {
	for _, order := range []string{"moves then dies", "dies then moves"} {
		t.Run(order, func(t *testing.T) {
			ns := testnet.New(t)
			srv := testdns.Start(t, ns.Do)
			srv.SetTTL(1)
			srv.Set("kafka.example.com", "127.0.0.80")
			brokers := map[string]net.Listener{}
			for _, a := range []string{"127.0.0.80:9092", "127.0.0.81:9092"} {
				ns.Run(t, func() (err error) { brokers[a], err = net.Listen("tcp4", a); return err })
				t.Cleanup(func() { brokers[a].Close() })
				go func(ln net.Listener) {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}(brokers[a])
			}
			p := start(t, "-o", "json", "--netns", ns.Path(), "--dport", "9092", "--no-snapshot")
			client, addr, goOn := startDNSClientCmd(t, exec.Command("nsenter", "--net="+ns.Path(), os.Args[0], "-test.run=^$"),
				"once:kafka.example.com:9092", dnsServerEnv+"="+srv.Addr.String(), dnsClientEveryEnv+"=100ms")
			if addr != "127.0.0.80" {
				t.Fatalf("client resolved %s", addr)
			}
			goOn()
			pid := fmt.Sprintf(`"pid":%d,`, client.Process.Pid)
			seen := func(what string, parts ...string) func([]string) bool {
				return func(lines []string) bool {
					for _, l := range lines {
						all := strings.Contains(l, pid)
						for _, part := range parts {
							all = all && strings.Contains(l, part)
						}
						if all {
							return true
						}
					}
					return false
				}
			}
			p.waitForIn(t, 10*time.Second, "a connect to the broker", seen("established", `"daddr":"127.0.0.80"`, `"new_state":"established"`))
			var moved time.Time
			switch order {
			case "moves then dies":
				srv.Set("kafka.example.com", "127.0.0.81")
				brokers["127.0.0.80:9092"].Close()
				moved = time.Now() // connects fail from here
			case "dies then moves":
				q := srv.QueryCount()
				brokers["127.0.0.80:9092"].Close()
				p.waitForIn(t, 10*time.Second, "a refused connect", seen("refused", `"daddr":"127.0.0.80"`, `"new_state":"close"`, `"ECONNREFUSED"`))
				// socktrace asks the server at the first failure: the old answer.
				deadline := time.Now().Add(10 * time.Second)
				for srv.QueryCount() == q {
					if time.Now().After(deadline) {
						t.Fatal("socktrace never asked the server at the failures")
					}
					time.Sleep(10 * time.Millisecond)
				}
				srv.Set("kafka.example.com", "127.0.0.81")
				moved = time.Now()
			}
			p.waitForIn(t, 10*time.Second, "a stale-dns alert", seen("stale-dns", `"alert":"stale-dns"`, `"daddr":"127.0.0.80"`))
			late := time.Since(moved)
			recs := parseJSON(t, p.stop(t))
			for _, a := range alertsOf(recs) {
				if a.str("alert") != "stale-dns" {
					continue
				}
				cur, _ := a["current_addrs"].([]any)
				if a.str("reason") != "failing" || a.str("dns_name") != "kafka.example.com" || len(cur) != 1 || cur[0] != "127.0.0.81" ||
					a.str("current_seen_by") != "socktrace" || a.num("ttl_s") != 1 {
					t.Errorf("stale-dns alert: %v\nwant failing, kafka.example.com now 127.0.0.81 seen by socktrace, TTL 1", a)
				}
				break
			}
			// The issue asks for 2 s; 1 s more for a loaded machine.
			if late > 3*time.Second {
				t.Errorf("stale-dns came %v after the record moved while connects failed; want 2s at most", late.Round(time.Millisecond))
			}
			t.Logf("stale-dns %v after the record moved", late.Round(time.Millisecond))
		})
	}
}
