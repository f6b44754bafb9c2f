package events_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// collector reads a tracer in the background.
type collector struct {
	tr      *events.Tracer
	mu      sync.Mutex
	recs    []events.Transition
	lost    uint64
	skipped uint64 // transitions neither program ran for (skipped records)
	done    chan error
	once    sync.Once
}

func startCollector(t *testing.T, opts events.Options) *collector {
	t.Helper()
	tr, err := events.Open(opts)
	if err != nil {
		t.Fatalf("open tracer: %v", err)
	}
	c := &collector{tr: tr, done: make(chan error, 1)}
	go func() {
		var r events.Record
		for {
			err := tr.Read(&r)
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				c.done <- err
				return
			}
			c.mu.Lock()
			switch {
			case r.Loss.Lost > 0:
				c.lost += r.Loss.Lost
			case r.Loss.Skipped > 0:
				c.skipped += r.Loss.Skipped
			case r.Loss.LostOther > 0 || r.Type == events.WakeRecord:
			default:
				c.recs = append(c.recs, r.Transition)
			}
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.stop(t); tr.Close() })
	return c
}

// waitFor polls until cond holds for the transitions so far.
func (c *collector) waitFor(t *testing.T, what string, cond func([]events.Transition) bool) {
	t.Helper()
	c.waitForIn(t, 5*time.Second, what, cond)
}

func (c *collector) waitForIn(t *testing.T, d time.Duration, what string, cond func([]events.Transition) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		ok := cond(c.recs)
		c.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("timed out waiting for %s; got:\n%s", what, dump(c.recs))
}

// stop detaches, drains and returns everything read.
func (c *collector) stop(t *testing.T) []events.Transition {
	t.Helper()
	c.once.Do(func() {
		if err := c.tr.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("read: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reader did not end after Stop")
		}
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]events.Transition(nil), c.recs...)
}

func dump(recs []events.Transition) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  sk=%x cookie=%d %s:%d -> %s:%d %s -> %s owner=%v/%d err=%d\n",
			r.SkAddr, r.Cookie, r.Src, r.SPort, r.Dst, r.DPort, r.Old, r.New, r.OwnerKnown, r.OwnerPID, r.SkErr)
	}
	return b.String()
}

// exchange runs, inside ns, one connect/accept/close with the client
// closing first, and returns the endpoints.
type endpoints struct {
	server, client netip.AddrPort
}

func exchange(t *testing.T, ns *testnet.NS, network, listenAddr string) endpoints {
	t.Helper()
	var ep endpoints
	ns.Run(t, func() error {
		ln, err := net.Listen(network, listenAddr)
		if err != nil {
			return err
		}
		defer ln.Close()
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		ep.server = c.RemoteAddr().(*net.TCPAddr).AddrPort()
		ep.client = c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
		// Wait for the client's FIN before closing the server side.
		if _, err := s.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("server read: want EOF, got %v", err)
		}
		return s.Close()
	})
	ep.server = netip.AddrPortFrom(ep.server.Addr().Unmap(), ep.server.Port())
	ep.client = netip.AddrPortFrom(ep.client.Addr().Unmap(), ep.client.Port())
	return ep
}

// refuse connects, inside ns, to a port nobody listens on.
func refuse(t *testing.T, ns *testnet.NS, addr string) {
	t.Helper()
	ns.Run(t, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return fmt.Errorf("connect to %s succeeded, want refused", addr)
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("connect to %s: want ECONNREFUSED, got %v", addr, err)
		}
		return nil
	})
}

type step struct{ old, new tcpstate.State }

func (s step) String() string { return s.old.String() + "->" + s.new.String() }

var (
	clientLife = []step{
		{tcpstate.Close, tcpstate.SynSent},
		{tcpstate.SynSent, tcpstate.Established},
		{tcpstate.Established, tcpstate.FinWait1},
		{tcpstate.FinWait1, tcpstate.FinWait2},
		{tcpstate.FinWait2, tcpstate.Close},
	}
	serverLife = []step{
		{tcpstate.Listen, tcpstate.SynRecv},
		{tcpstate.SynRecv, tcpstate.Established},
		{tcpstate.Established, tcpstate.CloseWait},
		{tcpstate.CloseWait, tcpstate.LastAck},
		{tcpstate.LastAck, tcpstate.Close},
	}
	listenerLife = []step{
		{tcpstate.Close, tcpstate.Listen},
		{tcpstate.Listen, tcpstate.Close},
	}
)

// bySocket groups transitions by kernel socket address, in order.
func bySocket(recs []events.Transition) map[uint64][]events.Transition {
	m := map[uint64][]events.Transition{}
	for _, r := range recs {
		m[r.SkAddr] = append(m[r.SkAddr], r)
	}
	return m
}

func steps(recs []events.Transition) []step {
	var out []step
	for _, r := range recs {
		out = append(out, step{r.Old, r.New})
	}
	return out
}

func sameSteps(a, b []step) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// closedCount counts transitions into close.
func closedCount(n int) func([]events.Transition) bool {
	return func(recs []events.Transition) bool {
		c := 0
		for _, r := range recs {
			if r.New == tcpstate.Close {
				c++
			}
		}
		return c >= n
	}
}

// withTracefs makes sure tracefs is mounted for the classic tracepoint.
func withTracefs(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/tracing/events/sock/inet_sock_set_state"); err == nil {
		return
	}
	if _, err := os.Stat("/sys/kernel/debug/tracing/events/sock/inet_sock_set_state"); err == nil {
		return
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		testnet.Skip(t, fmt.Sprintf("classic tracepoint needs tracefs, and mounting it failed: %v", err))
	}
	t.Cleanup(func() { unix.Unmount("/sys/kernel/tracing", 0) })
}

var attachModes = []string{events.AttachTpBtf, events.AttachRawTp, events.AttachTracepoint}

// TestLifecycle checks that one connect/accept/close yields exactly the
// expected transitions on both sides, with the right endpoints and
// owner, for IPv4 and IPv6 and for every way of attaching.
func TestLifecycle(t *testing.T) {
	testnet.RequireRoot(t)
	for _, mode := range attachModes {
		for _, fam := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
			t.Run(mode+"/"+fam.network, func(t *testing.T) {
				if mode == events.AttachTracepoint {
					withTracefs(t)
				}
				ns := testnet.New(t)
				c := startCollector(t, events.Options{Attach: mode, Filter: events.KernelFilter{Netns: ns.Inode}})
				ep := exchange(t, ns, fam.network, fam.addr)
				c.waitFor(t, "three sockets closed", closedCount(3))
				recs := c.stop(t)
				checkLifecycle(t, mode, recs, ep, ns.Inode)
			})
		}
	}
}

func checkLifecycle(t *testing.T, mode string, recs []events.Transition, ep endpoints, netns uint32) {
	t.Helper()
	socks := bySocket(recs)
	if len(socks) != 3 {
		t.Fatalf("want 3 sockets (listener, client, accepted), got %d:\n%s", len(socks), dump(recs))
	}
	var sawClient, sawServer, sawListener bool
	for _, life := range socks {
		got := steps(life)
		var want []step
		var local, peer netip.AddrPort
		switch {
		case sameSteps(got, clientLife):
			sawClient, want, local, peer = true, clientLife, ep.client, ep.server
		case sameSteps(got, serverLife):
			sawServer, want, local, peer = true, serverLife, ep.server, ep.client
		case sameSteps(got, listenerLife):
			sawListener, want, local = true, listenerLife, ep.server
		default:
			t.Fatalf("unexpected life %v:\n%s", got, dump(recs))
		}
		for i, r := range life {
			where := fmt.Sprintf("%s transition %d (%v)", mode, i, want[i])
			if r.Netns != netns {
				t.Errorf("%s: netns %d, want %d", where, r.Netns, netns)
			}
			if !r.OwnerKnown || r.OwnerPID != uint32(os.Getpid()) {
				t.Errorf("%s: owner known=%v pid=%d, want pid %d", where, r.OwnerKnown, r.OwnerPID, os.Getpid())
			}
			if r.Src != local.Addr() {
				t.Errorf("%s: local address %s, want %s", where, r.Src, local.Addr())
			}
			// The local port is assigned during connect: unknown at syn-sent.
			wantSPort := local.Port()
			if r.Old == tcpstate.Close && r.New == tcpstate.SynSent {
				wantSPort = 0
			}
			if r.SPort != wantSPort {
				t.Errorf("%s: local port %d, want %d", where, r.SPort, wantSPort)
			}
			if peer.IsValid() {
				if r.Dst != peer.Addr() || r.DPort != peer.Port() {
					t.Errorf("%s: peer %s:%d, want %s", where, r.Dst, r.DPort, peer)
				}
			}
			if wantFam := familyOf(local.Addr()); r.Family != wantFam {
				t.Errorf("%s: family %d, want %d", where, r.Family, wantFam)
			}
			if r.InOldKnown != (i > 0) {
				t.Errorf("%s: time in old state known=%v, want %v", where, r.InOldKnown, i > 0)
			}
			if i > 0 && r.InOld != time.Duration(r.Ktime-life[i-1].Ktime) {
				t.Errorf("%s: time in old state %v, want %v", where, r.InOld, time.Duration(r.Ktime-life[i-1].Ktime))
			}
			// With bpf_get_socket_cookie (TestCookieHelper checks it is
			// used where the kernel has it), every transition carries the
			// socket's cookie; without, the cookie read from the socket is
			// 0 until something asks for one (sock_diag, or another
			// tracer's helper call: other tests run beside this one), and
			// once set it never changes.
			if mode == events.AttachTpBtf && r.CookieFromHelper && (r.Cookie == 0 || r.Cookie != life[0].Cookie) {
				t.Errorf("%s: cookie %d, want the same non-zero cookie on every transition (first %d)", where, r.Cookie, life[0].Cookie)
			}
			if i > 0 && r.Cookie != life[i-1].Cookie && life[i-1].Cookie != 0 {
				t.Errorf("%s: cookie %d after %d: a cookie, once set, never changes", where, r.Cookie, life[i-1].Cookie)
			}
			if d := time.Since(r.Time); d < 0 || d > time.Minute {
				t.Errorf("%s: wall time %v is not close to now", where, r.Time)
			}
		}
	}
	if !sawClient || !sawServer || !sawListener {
		t.Fatalf("missing a socket: client %v server %v listener %v", sawClient, sawServer, sawListener)
	}
}

// TestCookieHelper checks that socktrace takes socket cookies from
// bpf_get_socket_cookie wherever the kernel lets tracing programs call it
// (5.12+), and that a kernel without it (5.10) falls back to tp_btf reading
// the cookie from the socket.
func TestCookieHelper(t *testing.T) {
	ns := testnet.New(t)
	herr := events.HaveCookieHelper(nil)
	if herr != nil && !errors.Is(herr, ebpf.ErrNotSupported) {
		t.Fatalf("cannot tell whether the kernel has the helper: %v", herr)
	}
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	method := c.tr.Method()
	exchange(t, ns, "tcp4", "127.0.0.1:0")
	c.waitFor(t, "three sockets closed", closedCount(3))
	recs := c.stop(t)
	if herr != nil {
		if !strings.HasPrefix(method, "tp_btf") || strings.Contains(method, "bpf_get_socket_cookie") {
			t.Errorf("attached with %q, want tp_btf reading the cookie from the socket", method)
		}
		for _, r := range recs {
			if r.CookieFromHelper {
				t.Fatalf("a transition says its cookie came from the helper, which the kernel lacks:\n%s", dump(recs))
			}
		}
		t.Skipf("%v: cookies are read from the socket (attached with %s)", herr, method)
	}
	if !strings.Contains(method, "bpf_get_socket_cookie") {
		t.Errorf("attached with %q, want tp_btf with bpf_get_socket_cookie", method)
	}
	for _, r := range recs {
		if !r.CookieFromHelper || r.Cookie == 0 {
			t.Fatalf("want every cookie from the helper and non-zero:\n%s", dump(recs))
		}
	}
}

func familyOf(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// TestRefused checks a connect to a closed port: syn-sent, then close
// with ECONNREFUSED.
func TestRefused(t *testing.T) {
	ns := testnet.New(t)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	refuse(t, ns, "127.0.0.1:1")
	c.waitFor(t, "the refused socket closed", closedCount(1))
	recs := c.stop(t)
	got := steps(recs)
	want := []step{{tcpstate.Close, tcpstate.SynSent}, {tcpstate.SynSent, tcpstate.Close}}
	if !sameSteps(got, want) {
		t.Fatalf("got %v, want %v:\n%s", got, want, dump(recs))
	}
	last := recs[1]
	if last.Error() != unix.ECONNREFUSED {
		t.Errorf("socket error %v, want ECONNREFUSED", last.Error())
	}
	if last.DPort != 1 || last.Dst != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("peer %s:%d, want 127.0.0.1:1", last.Dst, last.DPort)
	}
	if !last.OwnerKnown || last.OwnerPID != uint32(os.Getpid()) {
		t.Errorf("owner %v/%d, want %d", last.OwnerKnown, last.OwnerPID, os.Getpid())
	}
}

// kernelMatch is the reference meaning of a KernelFilter, written
// independently of the BPF program.
func kernelMatch(f events.KernelFilter, r events.Transition) bool {
	if f.States != 0 && !f.States.Has(r.New) && !f.States.Has(r.Old) {
		return false
	}
	if f.IPv4 != f.IPv6 && (r.Family == unix.AF_INET) != f.IPv4 {
		return false
	}
	in := func(p uint16, rs []events.PortRange) bool {
		if len(rs) == 0 {
			return true
		}
		for _, x := range rs {
			if p >= x.Lo && p <= x.Hi {
				return true
			}
		}
		return false
	}
	return in(r.SPort, f.SPorts) && in(r.DPort, f.DPorts)
}

// TestKernelFilters runs several tracers with different in-kernel filters
// side by side with an unfiltered one over the same traffic: each must
// see exactly the unfiltered transitions its filter keeps.
func TestKernelFilters(t *testing.T) {
	ns := testnet.New(t)
	// Fixed ports so the filters can name them before the traffic.
	const port4, port6 = 19092, 19093
	filters := map[string]events.KernelFilter{
		"state syn-sent":          {States: tcpstate.MaskOf(tcpstate.SynSent)},
		"state connected":         {States: mustStates(t, "connected")},
		"dport 19092":             {DPorts: []events.PortRange{{Lo: port4, Hi: port4}}},
		"sport range 19090-19095": {SPorts: []events.PortRange{{Lo: 19090, Hi: 19095}}},
		"dport 1 or 19093":        {DPorts: []events.PortRange{{Lo: 1, Hi: 1}, {Lo: port6, Hi: port6}}},
		"ipv4":                    {IPv4: true},
		"ipv6":                    {IPv6: true},
		"ipv6 close into close":   {IPv6: true, States: tcpstate.MaskOf(tcpstate.Close)},
	}
	all := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	filtered := map[string]*collector{}
	for name, f := range filters {
		f.Netns = ns.Inode
		filtered[name] = startCollector(t, events.Options{Filter: f})
	}
	exchange(t, ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", port4))
	exchange(t, ns, "tcp6", fmt.Sprintf("[::1]:%d", port6))
	refuse(t, ns, "127.0.0.1:1")
	all.waitFor(t, "seven sockets closed", closedCount(7))
	want := all.stop(t)
	for name, c := range filtered {
		got := c.stop(t)
		var exp []events.Transition
		for _, r := range want {
			if kernelMatch(filters[name], r) {
				exp = append(exp, r)
			}
		}
		if len(exp) == 0 {
			t.Errorf("%s: the traffic gives this filter nothing to keep; the test is wrong", name)
		}
		if len(got) != len(exp) {
			t.Errorf("%s: got %d transitions, want %d\ngot:\n%swant:\n%s", name, len(got), len(exp), dump(got), dump(exp))
			continue
		}
		// Each tracer has its own ring buffer: two sockets' transitions
		// made at the same moment on two CPUs may come in either order in
		// each. Compare socket by socket, each in its own order.
		bySock := func(rs []events.Transition) {
			sort.SliceStable(rs, func(i, j int) bool { return rs[i].SkAddr < rs[j].SkAddr })
		}
		bySock(got)
		bySock(exp)
		for i := range got {
			g, e := got[i], exp[i]
			if g.SkAddr != e.SkAddr || g.Old != e.Old || g.New != e.New {
				t.Errorf("%s: transition %d differs\ngot:\n%swant:\n%s", name, i, dump(got), dump(exp))
				break
			}
		}
	}
}

func mustStates(t *testing.T, s string) tcpstate.Mask {
	m, err := tcpstate.ParseList(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLostCounted fills a one-page ring buffer that nobody reads while a
// second tracer with a large ring counts the same transitions: what the
// small one delivers plus what it reports lost must be exactly that count.
func TestLostCounted(t *testing.T) {
	ns := testnet.New(t)
	f := events.KernelFilter{Netns: ns.Inode}
	ref := startCollector(t, events.Options{Filter: f})
	small, err := events.Open(events.Options{Filter: f, RingSize: os.Getpagesize()})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()

	const conns = 30
	for i := 0; i < conns; i++ {
		exchange(t, ns, "tcp4", "127.0.0.1:0")
	}
	ref.waitFor(t, "every socket closed", closedCount(3*conns))
	total := len(ref.stop(t))

	if err := small.Stop(); err != nil {
		t.Fatal(err)
	}
	var got, lost, lostRecords uint64
	var r events.Record
	for {
		err := small.Read(&r)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Loss.Lost > 0 {
			lost += r.Loss.Lost
			lostRecords++
		} else {
			got++
		}
	}
	if lost == 0 || lostRecords == 0 {
		t.Fatalf("no loss reported with a %d-byte ring and %d transitions", os.Getpagesize(), total)
	}
	if got+lost != uint64(total) {
		t.Fatalf("delivered %d + lost %d = %d, want exactly %d", got, lost, got+lost, total)
	}
	if n, _ := small.LostTotal(); n != lost {
		t.Errorf("LostTotal %d, reported %d", n, lost)
	}
	t.Logf("%d transitions: %d delivered, %d lost", total, got, lost)
}
