package events_test

// The figures of a record checked against the kernel's own: the local
// port of a failed connect, the SYNs of an attempt whatever dropped them,
// the data bytes a connection moved.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// closedPort returns a port of ns nobody listens on.
func closedPort(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	var port int
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		return ln.Close()
	})
	return port
}

// failedConnect makes, in ns, a connect to 127.0.0.1:port from a port the
// kernel picks, and how returns its local port as getsockname(2) gives it
// (the socket's inet_sport, which the kernel's own inet_sock_set_state
// tracepoint reports). how: "refused" (a blocking connect that fails),
// "abandoned" (closed by the application in syn-sent), "timed-out" (one
// SYN retransmit, TCP_SYNCNT 1, then ETIMEDOUT).
func failedConnect(t *testing.T, ns *testnet.NS, port int, how string) (local int) {
	t.Helper()
	ns.Run(t, func() error {
		typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
		if how != "refused" {
			typ |= unix.SOCK_NONBLOCK
		}
		fd, err := unix.Socket(unix.AF_INET, typ, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if how == "timed-out" {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
				return err
			}
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		switch how {
		case "refused":
			if !errors.Is(err, unix.ECONNREFUSED) {
				return fmt.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
			}
		default:
			if !errors.Is(err, unix.EINPROGRESS) {
				return fmt.Errorf("non-blocking connect to a dropping port: %v, want EINPROGRESS", err)
			}
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		local = sa.(*unix.SockaddrInet4).Port
		if how == "timed-out" {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, 10000); err != nil {
				return err
			}
			if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); unix.Errno(e) != unix.ETIMEDOUT {
				return fmt.Errorf("connect to a dropping port ended with %v, want ETIMEDOUT", unix.Errno(e))
			}
		}
		return nil
	})
	if local == 0 {
		t.Fatalf("%s connect: getsockname gave no local port", how)
	}
	return local
}

// TestFailedConnectPort: the syn-sent -> close of a refused, abandoned or
// timed-out connect carries the local port the kernel gave the socket
// (the kernel lets go of the port before it announces the close); its
// close -> syn-sent none (the port is picked later in connect), not one
// of a socket that was at the same address before (refused twice: the
// second socket may well take the first one's place).
func TestFailedConnectPort(t *testing.T) {
	ns := testnet.New(t)
	closed, dropping := closedPort(t, ns), ns.FullListener(t, 0)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	for _, tc := range []struct {
		how  string
		port int
		err  unix.Errno
	}{
		{"refused", closed, unix.ECONNREFUSED},
		{"refused", closed, unix.ECONNREFUSED},
		{"abandoned", dropping, 0},
		{"timed-out", dropping, unix.ETIMEDOUT},
	} {
		t.Run(tc.how, func(t *testing.T) {
			local := failedConnect(t, ns, tc.port, tc.how)
			var start, end events.Transition
			c.waitForIn(t, 5*time.Second, fmt.Sprintf("the %s connect's syn-sent -> close", tc.how), func(recs []events.Transition) bool {
				for i, r := range recs {
					if r.Old == tcpstate.SynSent && r.New == tcpstate.Close && int(r.DPort) == tc.port && r.Error() == tc.err &&
						(int(r.SPort) == local || r.SPort == 0) {
						for _, s := range recs[:i] {
							if s.SkAddr == r.SkAddr && s.Old == tcpstate.Close && s.New == tcpstate.SynSent {
								start = s
							}
						}
						end = r
						return true
					}
				}
				return false
			})
			if int(end.SPort) != local {
				t.Errorf("%s connect: syn-sent -> close has local port %d, the kernel's is %d", tc.how, end.SPort, local)
			}
			if start.New != tcpstate.SynSent || start.SPort != 0 {
				t.Errorf("%s connect: close -> syn-sent %v with local port %d, want one with none", tc.how, start.New, start.SPort)
			}
		})
	}
}

// nftCounter reads the packets of a named nftables counter in ns.
func nftCounter(t *testing.T, ns *testnet.NS, table, name string) uint64 {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "nft", "list", "counter", "inet", table, name).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list counter: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no packets in nft's counter:\n%s", out)
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return n
}

// TestSynRetransmitsDroppedOnOutput: an nftables rule on the client's
// output hook drops its SYNs (the kernel counts each retransmission as
// failed, TcpExtTCPRetransFail, and the tracepoint does not report it as
// sent): the attempt's syn_retransmits still counts every retransmission
// it tried, as total_retrans does, and the SYNs it tried (1 + those) are
// what segs_out and nft's counter say; the destination's counter agrees.
func TestSynRetransmitsDroppedOnOutput(t *testing.T) {
	ns := testnet.New(t)
	const port = 9092
	nftIn(t, ns, fmt.Sprintf("table inet out {\n counter syns {}\n chain out {\n  type filter hook output priority 0;\n  tcp dport %d counter name syns drop\n }\n}\n", port))
	c := hooked(t, ns, events.KindsOf(events.KindRetransmit), "tcp:tcp_retransmit_skb")
	local := failedConnect(t, ns, port, "timed-out")
	c.waitForIn(t, 10*time.Second, "the attempt closed", closedCount(1))
	counts, _, err := c.tr.DestCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := c.stop(t)
	end := last(t, recs, tcpstate.SynSent, tcpstate.Close, port)
	dropped := nftCounter(t, ns, "out", "syns")
	t.Logf("syn-sent -> close: syn_retransmits %d, total_retrans %d, segs_out %d; nft dropped %d SYNs", end.SynRetrans, end.TotalRetrans, end.SegsOut, dropped)
	if end.Error() != unix.ETIMEDOUT || int(end.SPort) != local || !end.TCPStats {
		t.Fatalf("attempt ended with %v from port %d (stats %v), want ETIMEDOUT from %d", end.Error(), end.SPort, end.TCPStats, local)
	}
	if end.TotalRetrans == 0 {
		t.Fatalf("the kernel retransmitted no SYN: the test proves nothing")
	}
	if uint32(end.SynRetrans) != end.TotalRetrans {
		t.Errorf("syn_retransmits %d, the kernel's total_retrans %d", end.SynRetrans, end.TotalRetrans)
	}
	if syns := 1 + uint64(end.SynRetrans); syns != uint64(end.SegsOut) || syns != dropped {
		t.Errorf("1 + %d SYN retransmits, segs_out %d, nft dropped %d: want all the same", end.SynRetrans, end.SegsOut, dropped)
	}
	var syn uint64
	for _, d := range counts {
		if d.Key.DPort == port {
			syn += d.N[events.CounterSynRetrans]
		}
	}
	if syn != uint64(end.SynRetrans) {
		t.Errorf("destination counter: %d SYN retransmits, the record %d", syn, end.SynRetrans)
	}
}

// talk makes, in ns, one connection on a new listener: each side sends
// n bytes and reads the peer's n, then it ends as end says: "client
// closes" (then the server, on EOF), "server closes" (then the client),
// "client closes, server later" (the server closes 200ms after: the
// client's socket has made way for a time-wait one without the server's
// FIN), "client half-closes" (shutdown SHUT_WR; the server closes on EOF; the
// client closes on EOF: it has the server's FIN when it does), "client
// aborts" (SO_LINGER 0 once both sides' data is acknowledged: an RST, no FIN). It
// returns the listener's port.
func talk(t *testing.T, ns *testnet.NS, n int, end string) int {
	t.Helper()
	var port int
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		cl, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer cl.Close()
		sv, err := ln.Accept()
		if err != nil {
			return err
		}
		defer sv.Close()
		// Both ways at once: n may be more than a socket buffer holds.
		both := func(c net.Conn) error {
			errc := make(chan error, 1)
			go func() { _, err := c.Write(make([]byte, n)); errc <- err }()
			if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
				return err
			}
			return <-errc
		}
		errc := make(chan error, 1)
		go func() { errc <- both(sv) }()
		if err := both(cl); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("server: %w", err)
		}
		eof := func(c net.Conn) error {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if k, err := c.Read(make([]byte, 1)); err != io.EOF {
				return fmt.Errorf("read after the peer's close: %d bytes, %v; want EOF", k, err)
			}
			return nil
		}
		switch end {
		case "client closes", "server closes", "client closes, server later":
			first, second := cl, sv
			if end == "server closes" {
				first, second = sv, cl
			}
			first.Close()
			if end == "client closes, server later" {
				time.Sleep(200 * time.Millisecond)
			}
			if err := eof(second); err != nil {
				return err
			}
			return second.Close()
		case "client half-closes":
			if err := cl.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
			if err := eof(sv); err != nil {
				return err
			}
			sv.Close()
			if err := eof(cl); err != nil {
				return err
			}
			return cl.Close()
		case "client aborts":
			// Both sides' data acknowledged first: the client's last
			// ACK may be delayed, and an RST before it leaves the
			// server's tail unacknowledged (bytes_acked short of n).
			for _, c := range []net.Conn{cl, sv} {
				if err := acknowledged(c.(*net.TCPConn)); err != nil {
					return err
				}
			}
			cl.(*net.TCPConn).SetLinger(0)
			cl.Close()
			sv.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := sv.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
				return fmt.Errorf("server read after the client's abort: %v, want ECONNRESET", err)
			}
			return sv.Close()
		}
		return fmt.Errorf("unknown end %q", end)
	})
	return port
}

// acknowledged waits until everything c sent is acknowledged.
func acknowledged(c *net.TCPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error = errors.New("data still unacknowledged after 5s")
	raw.Control(func(fd uintptr) {
		for i := 0; i < 500; i++ {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				ierr = err
				return
			}
			if info.Unacked == 0 && info.Notsent_bytes == 0 {
				ierr = nil
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return ierr
}

// TestDataBytes: a connection whose sides each send n bytes closes with
// bytes_acked n and bytes_received n on both sides, however it ends: the
// kernel's own counters also count the client's SYN and each FIN
// acknowledged or taken, which are not data. The destination's byte
// counters (socktrace_bytes_total) say n too.
func TestDataBytes(t *testing.T) {
	ns := testnet.New(t)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	type conn struct {
		n    int
		end  string
		port int
	}
	var conns []conn
	for _, n := range []int{0, 1, 70000} {
		for _, end := range []string{"client closes", "server closes", "client closes, server later", "client half-closes", "client aborts"} {
			conns = append(conns, conn{n, end, talk(t, ns, n, end)})
		}
	}
	// Each connection: a listener, a client and a server closed.
	c.waitFor(t, "every socket closed", closedCount(3*len(conns)))
	counts, _, err := c.tr.DestCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := c.stop(t)
	for _, cn := range conns {
		var client, server *events.Transition
		for i := range recs {
			r := &recs[i]
			if r.Kind != events.KindTransition || r.New != tcpstate.Close {
				continue
			}
			switch {
			case int(r.DPort) == cn.port && r.Old != tcpstate.SynSent:
				client = r
			case int(r.SPort) == cn.port && r.Old != tcpstate.Listen:
				server = r
			}
		}
		what := fmt.Sprintf("%d bytes, %s", cn.n, cn.end)
		if client == nil || server == nil {
			t.Errorf("%s: closes not found:\n%s", what, dump(recs))
			continue
		}
		for _, side := range []struct {
			name string
			r    *events.Transition
		}{{"client", client}, {"server", server}} {
			r := side.r
			if !r.TCPStats || r.BytesAcked != uint64(cn.n) || r.BytesReceived != uint64(cn.n) {
				t.Errorf("%s: %s's %s -> close: bytes_acked %d, bytes_received %d (stats %v); want %d each",
					what, side.name, r.Old, r.BytesAcked, r.BytesReceived, r.TCPStats, cn.n)
			}
		}
		var sent, received uint64
		for _, d := range counts {
			if int(d.Key.DPort) == cn.port {
				sent += d.N[events.CounterBytesAcked]
				received += d.N[events.CounterBytesReceived]
			}
		}
		if sent != uint64(cn.n) || received != uint64(cn.n) {
			t.Errorf("%s: destination counters: %d bytes sent, %d received; want %d each", what, sent, received, cn.n)
		}
	}
}
