package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// sockets in a namespace for the snapshot tests.
type scene struct {
	listenPort int
	client     net.Conn // established, with 10 unread bytes at the server
	server     net.Conn
	closeWait  net.Conn // the peer closed; this side never does
}

func buildScene(t *testing.T, ns *testnet.NS) *scene {
	t.Helper()
	sc := &scene{}
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		sc.listenPort = ln.Addr().(*net.TCPAddr).Port
		if sc.client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			return err
		}
		if sc.server, err = ln.Accept(); err != nil {
			return err
		}
		if _, err := sc.client.Write(make([]byte, 10)); err != nil {
			return err
		}
		c2, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		if sc.closeWait, err = ln.Accept(); err != nil {
			return err
		}
		return c2.Close()
	})
	t.Cleanup(func() { sc.client.Close(); sc.server.Close(); sc.closeWait.Close() })
	time.Sleep(50 * time.Millisecond)
	return sc
}

// ssEntry is what both tools must agree on for one socket.
type ssEntry struct {
	state, local, peer, pids string
}

// ssSockets runs ss -tanpH inside the namespace.
func ssSockets(t *testing.T, ns *testnet.NS) []ssEntry {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "ss", "-tanpH").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	var entries []ssEntry
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		e := ssEntry{state: f[0], local: normAddr(f[3]), peer: normAddr(f[4])}
		if len(f) > 5 {
			e.pids = pidsOf(f[5])
		}
		entries = append(entries, e)
	}
	return entries
}

// normAddr turns ss's "127.0.0.1:80", "[::1]:80", "*:*" and "0.0.0.0:*"
// into one spelling.
func normAddr(s string) string {
	s = strings.ReplaceAll(s, "*", "0")
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return s
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// pidsOf extracts "1,2" from users:(("x",pid=1,fd=3),("y",pid=2,fd=4)).
func pidsOf(users string) string {
	var pids []string
	for _, part := range strings.Split(users, "pid=")[1:] {
		pids = append(pids, strings.SplitN(part, ",", 2)[0])
	}
	sort.Strings(pids)
	return strings.Join(pids, ",")
}

var ssStateOf = map[string]string{
	"established": "ESTAB", "syn-sent": "SYN-SENT", "syn-recv": "SYN-RECV", "fin-wait-1": "FIN-WAIT-1",
	"fin-wait-2": "FIN-WAIT-2", "time-wait": "TIME-WAIT", "close": "UNCONN", "close-wait": "CLOSE-WAIT",
	"last-ack": "LAST-ACK", "listening": "LISTEN", "closing": "CLOSING",
}

// TestOnceAgreesWithSS compares socktrace --once with ss -tanp on the
// same namespace, as sets.
func TestOnceAgreesWithSS(t *testing.T) {
	ns := testnet.New(t)
	buildScene(t, ns)
	out, err := exec.Command(socktraceBin(t), "--once", "--netns", ns.Path(), "-o", "json").Output()
	if err != nil {
		t.Fatalf("socktrace --once: %v", err)
	}
	var got []ssEntry
	for _, r := range parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")) {
		if r.str("type") != "socket" || uint32(r.num("netns")) != ns.Inode {
			t.Errorf("unexpected record %v", r)
			continue
		}
		e := ssEntry{
			state: ssStateOf[r.str("state")],
			local: netip.AddrPortFrom(netip.MustParseAddr(r.str("saddr")), uint16(r.num("sport"))).String(),
			peer:  netip.AddrPortFrom(netip.MustParseAddr(r.str("daddr")), uint16(r.num("dport"))).String(),
		}
		var pids []string
		users, _ := r["users"].([]any)
		for _, u := range users {
			pids = append(pids, fmt.Sprint(int(u.(map[string]any)["pid"].(float64))))
		}
		sort.Strings(pids)
		e.pids = strings.Join(pids, ",")
		got = append(got, e)
	}
	want := ssSockets(t, ns)
	key := func(e ssEntry) string { return fmt.Sprintf("%s %s %s %s", e.state, e.local, e.peer, e.pids) }
	gs, ws := map[string]bool{}, map[string]bool{}
	for _, e := range got {
		gs[key(e)] = true
	}
	for _, e := range want {
		ws[key(e)] = true
	}
	for k := range ws {
		if !gs[k] {
			t.Errorf("ss lists %q, socktrace does not", k)
		}
	}
	for k := range gs {
		if !ws[k] {
			t.Errorf("socktrace lists %q, ss does not", k)
		}
	}
	if len(want) < 5 {
		t.Errorf("ss listed %d sockets, want at least 5 (the scene is wrong): %v", len(want), want)
	}

	// The table form reads like ss -tanpo.
	tbl, err := exec.Command(socktraceBin(t), "--once", "-n", "--netns", ns.Path()).Output()
	if err != nil {
		t.Fatal(err)
	}
	text := string(tbl)
	for _, w := range []string{"State", "Recv-Q", "ESTAB", "LISTEN", "CLOSE-WAIT", fmt.Sprintf(`users:(("%s",pid=%d,fd=`, selfComm(), os.Getpid()), "timer:(keepalive,"} {
		if !strings.Contains(text, w) {
			t.Errorf("--once table lacks %q:\n%s", w, text)
		}
	}
}

// TestSnapshotJoinsTransitions: a connection made before socktrace
// starts is listed from the snapshot, and its close joins onto it, with
// the owner found in /proc even for the transitions done in softirq.
func TestSnapshotJoinsTransitions(t *testing.T) {
	ns := testnet.New(t)
	sc := buildScene(t, ns)
	p := start(t, "-o", "json", "--netns", ns.Path())
	p.waitFor(t, "the snapshot", func(l []string) bool { return len(l) >= 5 })
	sc.client.Close()
	p.waitFor(t, "the server side in close-wait", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"new_state":"close-wait"`)
	})
	recs := parseJSON(t, p.stop(t))

	sockets := map[float64]record{}
	for _, r := range recs {
		if r.str("type") == "socket" {
			sockets[r.num("cookie")] = r
		}
	}
	var server record
	for _, s := range sockets {
		if s.str("state") == "established" && int(s.num("sport")) == sc.listenPort {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no established server socket in the snapshot: %v", sockets)
	}
	if server.num("recv_q") != 10 || int(server.num("pid")) != os.Getpid() || server["preexisting"] != true {
		t.Errorf("server socket: %v, want recv_q 10, pid %d, preexisting", server, os.Getpid())
	}
	var joined []record
	for _, r := range recs {
		if r.str("type") == "transition" && r.num("cookie") == server.num("cookie") {
			joined = append(joined, r)
		}
	}
	if len(joined) != 1 || joined[0].str("old_state") != "established" || joined[0].str("new_state") != "close-wait" {
		t.Fatalf("transitions of the server socket: %v, want established -> close-wait", joined)
	}
	if int(joined[0].num("pid")) != os.Getpid() {
		t.Errorf("close-wait (a softirq transition of a pre-existing socket) attributed to %v, want %d", joined[0]["pid"], os.Getpid())
	}
	if _, ok := sockets[joined[0].num("cookie")]; !ok {
		t.Error("the transition's cookie is not a snapshot cookie")
	}
}

// TestOwnerOfOtherProcess: a connection made by another process is
// attributed to it on every transition, including syn-sent ->
// established, which the kernel runs when the SYN-ACK arrives.
func TestOwnerOfOtherProcess(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	p := start(t, "-o", "json", "--no-snapshot", "--netns", ns.Path(), "--dport", fmt.Sprint(port))
	child := exec.Command("nsenter", "--net="+ns.Path(), "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; sleep 0.2", port))
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	p.waitFor(t, "the client's close", countNetns(ns.Inode, 5))
	recs := inNetns(parseJSON(t, p.stop(t)), ns.Inode)
	sawEstablished := false
	for _, r := range recs {
		if int(r.num("pid")) != child.Process.Pid || r.str("comm") != "bash" {
			t.Errorf("%s -> %s owned by %v %v, want bash %d", r.str("old_state"), r.str("new_state"), r["pid"], r["comm"], child.Process.Pid)
		}
		if r.str("new_state") == "established" {
			sawEstablished = true
		}
	}
	if !sawEstablished {
		t.Errorf("no syn-sent -> established among %v", recs)
	}
}

// TestFilterExpression: an ss filter expression given as arguments keeps
// the same as its meaning.
func TestFilterExpression(t *testing.T) {
	ns := testnet.New(t)
	p := start(t, "-o", "json", "--no-snapshot", "--netns", ns.Path(), "dport = :9092 and ( state syn-sent or state close )")
	refuse(t, ns, "127.0.0.1:9092")
	refuse(t, ns, "127.0.0.1:9093")
	exchange(t, ns, "127.0.0.1:0")
	p.waitFor(t, "the refused connect", countNetns(ns.Inode, 2))
	time.Sleep(100 * time.Millisecond)
	recs := inNetns(parseJSON(t, p.stop(t)), ns.Inode)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2 (syn-sent and close of the connect to 9092): %v", len(recs), recs)
	}
	for _, r := range recs {
		if r.num("dport") != 9092 {
			t.Errorf("kept %v", r)
		}
	}
	out, err := exec.Command(socktraceBin(t), "--once", "dport = :9092 and ( stat syn-sent )").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"stat"`) || !strings.Contains(string(out), "^") {
		t.Errorf("syntax error: %v\n%s", err, out)
	}
}

// selfComm is this test binary's name as the kernel keeps it.
func selfComm() string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(b))
}

// TestFullAcceptQueue: a listener whose process does not accept shows its
// accept queue in Recv-Q and its backlog in Send-Q, as ss does.
func TestFullAcceptQueue(t *testing.T) {
	ns := testnet.New(t)
	const backlog = 1
	// The kernel queues backlog+1 connections; the next SYNs are dropped.
	port := ns.FullListener(t, backlog)
	out, err := exec.Command(socktraceBin(t), "--once", "--netns", ns.Path(), "-o", "json", fmt.Sprintf("state listening and sport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("socktrace --once: %v", err)
	}
	recs := parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n"))
	if len(recs) != 1 {
		t.Fatalf("want the one listener, got %v", recs)
	}
	ssOut, err := exec.Command("nsenter", "--net="+ns.Path(), "ss", "-tlnH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(ssOut))
	if len(f) < 3 {
		t.Fatalf("ss: %q", ssOut)
	}
	l := recs[0]
	if got := fmt.Sprintf("%d %d", int(l.num("recv_q")), int(l.num("send_q"))); got != f[1]+" "+f[2] {
		t.Errorf("listener Recv-Q Send-Q %s, ss says %s %s", got, f[1], f[2])
	}
	if l.num("recv_q") != backlog+1 || l.num("send_q") != backlog {
		t.Errorf("listener recv_q %v send_q %v, want a full queue: %d of backlog %d", l["recv_q"], l["send_q"], backlog+1, backlog)
	}

	// The summary names it as a listener under pressure.
	out, err = exec.Command(socktraceBin(t), "-o", "json", "--netns", ns.Path(), "--summary", "--duration", "50ms").Output()
	if err != nil {
		t.Fatal(err)
	}
	sum := lastSummary(t, parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")))
	ls, _ := sum["listeners"].([]any)
	if len(ls) != 1 {
		t.Fatalf("summary listeners %v, want the full one", sum["listeners"])
	}
	sl := record(ls[0].(map[string]any))
	if int(sl.num("sport")) != port || sl["full"] != true || sl.num("accept_q") != backlog+1 || sl.num("backlog") != backlog || int(sl.num("pid")) != os.Getpid() {
		t.Errorf("summary listener %v, want port %d full, owned by %d", sl, port, os.Getpid())
	}
}

// TestOnceAllNamespaces: --netns all lists the sockets of every
// namespace, each with its namespace's inode.
func TestOnceAllNamespaces(t *testing.T) {
	var nss []*testnet.NS
	ports := map[uint32]int{}
	for i := 0; i < 2; i++ {
		ns := testnet.New(t)
		nss = append(nss, ns)
		ports[ns.Inode] = acceptAndClose(t, ns)
	}
	out, err := exec.Command(socktraceBin(t), "--once", "--netns", "all", "-o", "json", "state listening").Output()
	if err != nil {
		t.Fatalf("socktrace --once --netns all: %v", err)
	}
	found := map[uint32]bool{}
	for _, r := range parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")) {
		ino := uint32(r.num("netns"))
		if p, ok := ports[ino]; ok && int(r.num("sport")) == p && int(r.num("pid")) == os.Getpid() {
			found[ino] = true
		}
	}
	for _, ns := range nss {
		if !found[ns.Inode] {
			t.Errorf("the listener in namespace %d (port %d) is not listed", ns.Inode, ports[ns.Inode])
		}
	}
}

// TestOnceSaysHowOwnersWereFound: --once says on stderr how it found the
// sockets' holders (a BPF iterator, else /proc), in JSON as in the
// table, and stdout stays the listing alone (every line JSON).
func TestOnceSaysHowOwnersWereFound(t *testing.T) {
	ns := testnet.New(t)
	listen(t, ns)
	for _, output := range []string{"json", "table"} {
		var stdout, stderr bytes.Buffer
		c := exec.Command(socktraceBin(t), "--once", "--netns", ns.Path(), "-o", output)
		c.Stdout, c.Stderr = &stdout, &stderr
		if err := c.Run(); err != nil {
			t.Fatalf("socktrace --once -o %s: %v\n%s", output, err, stderr.String())
		}
		if !regexp.MustCompile(`(?m)^socktrace: socket owners from (a BPF |/proc)`).MatchString(stderr.String()) {
			t.Errorf("--once -o %s: stderr does not say how owners were found:\n%s", output, stderr.String())
		}
		if strings.Contains(stdout.String(), "socket owners") {
			t.Errorf("--once -o %s: the owners' line is on stdout:\n%s", output, stdout.String())
		}
		if output == "json" {
			recs := parseJSON(t, strings.Split(strings.TrimSpace(stdout.String()), "\n"))
			if len(recs) == 0 {
				t.Errorf("--once -o json listed nothing; stderr:\n%s", stderr.String())
			}
		}
	}
}
