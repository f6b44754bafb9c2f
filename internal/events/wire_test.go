package events_test

// What happened on the wire, counted by the retransmit and reset hooks
// and read from the socket at its transitions.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// nftIn runs an nftables script in the namespace, or skips without nft.
func nftIn(t *testing.T, ns *testnet.NS, script string) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("SOCKTRACE_VM") != "" {
			// vmtest's initramfs holds the test binaries, not nft.
			t.Skip("nft is not in the VM: this test runs on the host (make test)")
		}
		testnet.Skip(t, "nft (nftables) is not installed: apt-get install nftables")
	}
	c := exec.Command("nsenter", "--net="+ns.Path(), "nft", "-f", "-")
	c.Stdin = strings.NewReader(script)
	if out, err := c.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "No such file or directory") || strings.Contains(string(out), "Operation not supported") {
			testnet.Skip(t, "this kernel has no nftables: "+strings.TrimSpace(string(out)))
		}
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

// hooked opens a collector and checks the hooks this test needs are on.
func hooked(t *testing.T, ns *testnet.NS, kinds events.Kinds, need ...string) *collector {
	t.Helper()
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}, Kinds: kinds})
	for _, h := range c.tr.Hooks() {
		for _, n := range need {
			if h.Tracepoint == n && h.Method == "" {
				testnet.Skip(t, fmt.Sprintf("%s is not attached: %v", n, h.Err))
			}
		}
	}
	return c
}

func last(t *testing.T, recs []events.Transition, old, new tcpstate.State, port uint16) events.Transition {
	t.Helper()
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Kind == events.KindTransition && r.Old == old && r.New == new && (r.DPort == port || r.SPort == port) {
			return r
		}
	}
	t.Fatalf("no %s -> %s on port %d:\n%s", old, new, port, dump(recs))
	return events.Transition{}
}

// sysctl sets a sysctl in the namespace; optional ones may be missing.
func sysctl(t *testing.T, ns *testnet.NS, name, value string, optional bool) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	err := ns.Do(func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil && !(optional && errors.Is(err, os.ErrNotExist)) {
		t.Fatalf("sysctl %s=%s: %v", name, value, err)
	}
}

// TestSynRetransmits: SYNs dropped (a listener whose accept queue is
// full drops them, on every kernel), tcp_syn_retries=2: the attempt ends
// with ETIMEDOUT after exactly 2 retransmitted SYNs, in the stream and in
// the destination's counters. (Since 6.5 the first SYN retransmits come
// every second, tcp_syn_linear_timeouts of them: set to 0, the backoff is
// the classic 1, 2, 4 s and 2 retries time out after 7 s.)
func TestSynRetransmits(t *testing.T) {
	ns := testnet.New(t)
	sysctl(t, ns, "net.ipv4.tcp_syn_retries", "2", false)
	sysctl(t, ns, "net.ipv4.tcp_syn_linear_timeouts", "0", true)
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 9092, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(fd, 0); err != nil { // room for one, never accepted
			return err
		}
		c, err := net.Dial("tcp4", "127.0.0.1:9092")
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		return nil
	})
	c := hooked(t, ns, events.KindsOf(events.KindRetransmit), "tcp:tcp_retransmit_skb")
	ns.Run(t, func() error {
		_, err := net.Dial("tcp4", "127.0.0.1:9092")
		if !errors.Is(err, unix.ETIMEDOUT) {
			return fmt.Errorf("connect to a dropping port: %v, want ETIMEDOUT", err)
		}
		return nil
	})
	c.waitForIn(t, 10*time.Second, "the attempt closed", closedCount(1))
	counts, _, err := c.tr.DestCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := c.stop(t)
	end := last(t, recs, tcpstate.SynSent, tcpstate.Close, 9092)
	if end.SynRetrans != 2 || end.Error() != unix.ETIMEDOUT {
		t.Errorf("attempt ended with %d SYN retransmits, error %v; want 2, ETIMEDOUT", end.SynRetrans, end.Error())
	}
	if !end.TCPStats || end.TotalRetrans != 2 {
		t.Errorf("the kernel's count: stats %v, total_retrans %d; want 2", end.TCPStats, end.TotalRetrans)
	}
	if end.RstReceived {
		t.Errorf("an RST received from a port that drops")
	}
	var retransRecs int
	for _, r := range recs {
		if r.Kind == events.KindRetransmit && r.DPort == 9092 {
			retransRecs++
			if r.New != tcpstate.SynSent || !r.OwnerKnown {
				t.Errorf("retransmit record in %s, owner %v; want syn-sent, known", r.New, r.OwnerKnown)
			}
		}
	}
	if retransRecs != 2 {
		t.Errorf("%d retransmit records, want 2", retransRecs)
	}
	var syn, timeout uint64
	for _, d := range counts {
		if d.Key.DPort == 9092 {
			syn += d.N[events.CounterSynRetrans]
			timeout += d.N[events.OutcomeTimeout]
		}
	}
	if syn != 2 || timeout != 1 {
		t.Errorf("destination counters: %d SYN retransmits, %d timeouts; want 2, 1", syn, timeout)
	}
}

// TestResets: a connect to a closed port is refused by an RST; a peer
// that aborts (SO_LINGER 0) resets the connection.
func TestResets(t *testing.T) {
	ns := testnet.New(t)
	c := hooked(t, ns, events.KindsOf(events.KindResetReceived), "tcp:tcp_receive_reset")
	refuse(t, ns, "127.0.0.1:1")
	var port uint16
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer cl.Close()
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		s.(*net.TCPConn).SetLinger(0)
		s.Close() // RST
		_, err = cl.Read(make([]byte, 1))
		if !errors.Is(err, unix.ECONNRESET) {
			return fmt.Errorf("client read after the peer's abort: %v, want ECONNRESET", err)
		}
		return nil
	})
	c.waitFor(t, "both closed", closedCount(4))
	recs := c.stop(t)
	refused := last(t, recs, tcpstate.SynSent, tcpstate.Close, 1)
	if !refused.RstReceived || refused.Error() != unix.ECONNREFUSED {
		t.Errorf("refused connect: rst_received %v, error %v", refused.RstReceived, refused.Error())
	}
	var reset *events.Transition
	for i := range recs {
		r := &recs[i]
		if r.Kind == events.KindTransition && r.New == tcpstate.Close && r.DPort == port {
			reset = r
		}
	}
	if reset == nil || !reset.RstReceived {
		t.Errorf("the client's close after the peer's abort: %+v, want rst_received", reset)
	}
	n := 0
	for _, r := range recs {
		if r.Kind == events.KindResetReceived {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d reset-received records, want 2 (the refusal, the abort)", n)
	}
}

// TestBytesAndLifetime: an upload of exactly N bytes closes with
// bytes_acked >= N on the client and bytes_received >= N on the server.
func TestBytesAndLifetime(t *testing.T) {
	const n = 1 << 20
	ns := testnet.New(t)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	var port uint16
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		done := make(chan error, 1)
		go func() {
			s, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			got, err := io.Copy(io.Discard, s)
			s.Close()
			if err == nil && got != n {
				err = fmt.Errorf("server read %d bytes, want %d", got, n)
			}
			done <- err
		}()
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		if _, err := io.Copy(cl, bytes.NewReader(make([]byte, n))); err != nil {
			return err
		}
		cl.Close()
		return <-done
	})
	c.waitFor(t, "both closed", closedCount(3))
	recs := c.stop(t)
	var client, server *events.Transition
	for i := range recs {
		r := &recs[i]
		if r.New != tcpstate.Close {
			continue
		}
		switch {
		case r.DPort == port:
			client = r
		case r.SPort == port && r.Old != tcpstate.Listen:
			server = r
		}
	}
	if client == nil || server == nil {
		t.Fatalf("closes not found:\n%s", dump(recs))
	}
	if !client.TCPStats || client.BytesAcked < n || client.SegsOut == 0 {
		t.Errorf("client close: stats %v, bytes_acked %d, segs_out %d; want >= %d", client.TCPStats, client.BytesAcked, client.SegsOut, n)
	}
	if !server.TCPStats || server.BytesReceived < n || server.SegsIn == 0 {
		t.Errorf("server close: stats %v, bytes_received %d, segs_in %d; want >= %d", server.TCPStats, server.BytesReceived, server.SegsIn, n)
	}
	if client.SRTT <= 0 || client.SRTT > time.Second {
		t.Errorf("client srtt %s on loopback", client.SRTT)
	}
}

// TestRetransmitsUnderLoss: with 30% of the packets dropped, a transfer
// retransmits; the close's total_retrans is what TCP_INFO (what ss -ti
// shows) said just before the close, plus at most the FIN's retransmits.
func TestRetransmitsUnderLoss(t *testing.T) {
	ns := testnet.New(t)
	// Only data segments are dropped (not the handshake, ACKs or FIN):
	// after everything is acknowledged nothing is retransmitted again.
	nftIn(t, ns, "table inet lossy {\n chain in {\n  type filter hook input priority 0;\n  tcp dport 7070 meta length > 200 numgen random mod 100 < 30 drop\n }\n}\n")
	c := hooked(t, ns, 0, "tcp:tcp_retransmit_skb")
	var before uint32
	var clientPort uint16
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:7070")
		if err != nil {
			return err
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			s, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			io.Copy(io.Discard, s)
			s.Close()
			done <- nil
		}()
		cl, err := net.DialTimeout("tcp4", "127.0.0.1:7070", 30*time.Second)
		if err != nil {
			return err
		}
		clientPort = uint16(cl.LocalAddr().(*net.TCPAddr).Port)
		cl.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.Copy(cl, bytes.NewReader(make([]byte, 1<<20))); err != nil {
			return err
		}
		raw, err := cl.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		raw.Control(func(fd uintptr) {
			// Wait until everything is sent and acknowledged (nothing in
			// flight, nothing left in the send queue: io.Copy returns once
			// the data is queued, and a queue held back by the congestion
			// window can have nothing in flight for a moment), then read
			// TCP_INFO.
			for i := 0; i < 600; i++ {
				info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
				if err == nil && info.Unacked == 0 && info.Notsent_bytes == 0 {
					before = info.Total_retrans
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		cl.Close()
		return <-done
	})
	c.waitForIn(t, 60*time.Second, "the client closed", func(recs []events.Transition) bool {
		for _, r := range recs {
			if r.New == tcpstate.Close && r.SPort == clientPort {
				return true
			}
		}
		return false
	})
	recs := c.stop(t)
	var end *events.Transition
	for i := range recs {
		if recs[i].New == tcpstate.Close && recs[i].SPort == clientPort {
			end = &recs[i]
		}
	}
	t.Logf("TCP_INFO before close: %d retransmits; at close: total_retrans %d, hook counted %d (+%d SYN)", before, end.TotalRetrans, end.Retrans, end.SynRetrans)
	if before == 0 {
		t.Fatalf("no retransmit with 30%% loss: the test proves nothing")
	}
	// After the last TCP_INFO only the FIN is sent, and not dropped.
	if end.TotalRetrans != before {
		t.Errorf("total_retrans %d at close, %d in TCP_INFO just before", end.TotalRetrans, before)
	}
	// The hook fires once per buffer retransmitted; the kernel counts
	// segments, and a buffer may hold several (GSO).
	if got := end.Retrans + uint32(end.SynRetrans); got == 0 || got > end.TotalRetrans {
		t.Errorf("the hook counted %d retransmits (%d SYN), the kernel %d segments", got, end.SynRetrans, end.TotalRetrans)
	}
}

// TestRTTWithNetem: with netem delaying every packet on the loopback by
// 10 ms, the handshake takes at least 20 ms (SYN and SYN-ACK each
// delayed) and the close reports a smoothed RTT of at least that. Where
// the kernel has sch_netem (Debian's, in make vmtest; this host's has
// not).
func TestRTTWithNetem(t *testing.T) {
	ns := testnet.New(t)
	if err := ns.Delay(10 * time.Millisecond); errors.Is(err, testnet.ErrNoNetem) {
		t.Skip("this kernel has no sch_netem (make vmtest runs this on Debian's kernels, which have it)")
	} else if err != nil {
		t.Fatal(err)
	}
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	var port uint16
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		done := make(chan error, 1)
		go func() {
			s, err := ln.Accept()
			if err == nil {
				_, err = io.Copy(io.Discard, s)
				s.Close()
			}
			done <- err
		}()
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		for i := 0; i < 5; i++ { // a few round trips for the RTT estimate
			if _, err := cl.Write(make([]byte, 100)); err != nil {
				return err
			}
			time.Sleep(30 * time.Millisecond)
		}
		cl.Close()
		return <-done
	})
	c.waitForIn(t, 10*time.Second, "both closed", closedCount(3))
	recs := c.stop(t)
	var connected, closed *events.Transition
	for i := range recs {
		r := &recs[i]
		if r.DPort != port {
			continue
		}
		switch {
		case r.Old == tcpstate.SynSent && r.New == tcpstate.Established:
			connected = r
		case r.New == tcpstate.Close:
			closed = r
		}
	}
	if connected == nil || closed == nil {
		t.Fatalf("client's connect or close not found:\n%s", dump(recs))
	}
	if !connected.InOldKnown || connected.InOld < 20*time.Millisecond {
		t.Errorf("handshake %s, want at least 20ms (10ms each way)", connected.InOld)
	}
	if !closed.TCPStats || closed.SRTT < 20*time.Millisecond || closed.SRTT > time.Second {
		t.Errorf("srtt at close %s (stats %v), want 20ms or a little more", closed.SRTT, closed.TCPStats)
	}
	t.Logf("handshake %s, srtt %s with 10ms netem delay each way", connected.InOld, closed.SRTT)
}
