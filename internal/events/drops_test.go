package events_test

// Packets dropped on this host (skb:kfree_skb): attributed to the socket
// that sent them, or counted as of no socket, with the kernel's reason
// (5.17+) or the function that freed them (5.10 to 5.16). These run on
// the kernel matrix too (make vmtest): no nft there; the nftables cases
// are in cmd/socktrace.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/kallsyms"
	"github.com/socktrace/socktrace/internal/kernelver"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// dropNamer is the tracer's drop hook's namer; the test fails when the
// hook did not attach (every kernel of the matrix has kfree_skb and BTF).
func dropNamer(t *testing.T, tr *events.Tracer) *drops.Namer {
	t.Helper()
	for _, h := range tr.Hooks() {
		if h.Tracepoint == "skb:kfree_skb" && h.Err != nil {
			t.Fatalf("drop hook not attached: %v", h.Err)
		}
	}
	if tr.DropReasons() == events.DropsOff {
		t.Fatal("drop hook not attached, and no hook status says why")
	}
	n, err := drops.NewNamer(tr.DropReasons(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkReasonName checks that name is what this kernel gives: an enum
// skb_drop_reason name when it has reasons (5.17+), else the name of a
// kernel function (from /proc/kallsyms).
func checkReasonName(t *testing.T, tr *events.Tracer, name string) {
	t.Helper()
	switch tr.DropReasons() {
	case events.DropsByReason:
		names, err := events.DropReasonNames(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if n == name {
				return
			}
		}
		t.Errorf("drop reason %q is not a name of this kernel's enum skb_drop_reason", name)
	case events.DropsByLocation:
		syms, err := kallsyms.Read()
		if err != nil {
			t.Fatal(err)
		}
		if name == "" || strings.HasPrefix(name, "0x") || syms.Addr(name) == 0 {
			t.Errorf("drop location %q is not a kernel function (this kernel gives no drop reasons)", name)
		}
	}
}

// TestDropsNoSocket: a SYN to a closed port is dropped by the receiving
// side's TCP (no socket: NO_SOCKET since 5.17, freed in tcp_v4_rcv
// before) and answered with an RST; the drop is of no socket socktrace
// follows, counted in the unattributed total of its namespace, once per
// SYN, and not sent even when drops of no socket are asked for
// (DropTuples: they are SYNs of no connect attempt; storms come from
// there). Datagrams to a closed UDP port count in the drops not TCP.
func TestDropsNoSocket(t *testing.T) {
	ns := testnet.New(t)
	port := closedPort(t, ns)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}, DropTuples: true})
	namer := dropNamer(t, c.tr)
	const n = 5
	for i := 0; i < n; i++ {
		failedConnect(t, ns, port, "refused")
	}
	c.waitFor(t, "the refused connects' closes", func(recs []events.Transition) bool {
		closes := 0
		for _, r := range recs {
			if r.Old == tcpstate.SynSent && r.New == tcpstate.Close {
				closes++
			}
		}
		return closes == n
	})
	u, err := c.tr.UnattributedDrops(ns.Inode)
	if err != nil {
		t.Fatal(err)
	}
	want := "NO_SOCKET"
	if c.tr.DropReasons() == events.DropsByLocation {
		want = "tcp_v4_rcv"
	}
	got := map[string]uint64{}
	for r, v := range u.NoSocket {
		got[namer.Name(r)] += v
	}
	if got[want] != n {
		t.Errorf("drops of no socket in the test's namespace: %v, want %d %s (one per SYN refused)", got, n, want)
	}
	// Datagrams to a closed UDP port are dropped too: counted in the
	// total of drops not TCP (of every namespace: at least these).
	before := u.Other
	const datagrams = 20
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i := 0; i < datagrams; i++ {
			if err := unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
				return err
			}
		}
		return nil
	})
	if u, err = c.tr.UnattributedDrops(ns.Inode); err != nil {
		t.Fatal(err)
	} else if u.Other-before < datagrams {
		t.Errorf("drops not TCP went from %d to %d, want at least %d more (the datagrams to a closed port)", before, u.Other, datagrams)
	}
	for _, r := range c.stop(t) {
		if r.IsTupleDrop() && r.Netns == ns.Inode {
			// NO_SOCKET (before 5.17: freed in tcp_v4_rcv) is never sent.
			t.Errorf("a drop of no socket was sent for a SYN to a closed port (%s): %+v", namer.Name(r.DropReason), r)
			continue
		}
		if r.IsTupleDrop() {
			continue // of another namespace: sent whatever the filter
		}
		if r.Drops != 0 {
			t.Errorf("a socket of a refused connect has %d drops (the SYNs were dropped by the peer's side, of no socket): %+v", r.Drops, r)
		}
	}
}

// TestDropsSent: every SYN of a connect dropped on the way out (a netem
// qdisc losing every packet on the namespace's loopback: the kernel
// frees them with their socket) is counted on the socket: its close
// says as many drops as SYNs tried (TCP_SYNCNT 1: the SYN and its
// retransmits, the kernel's total_retrans), direction
// sent, and a reason this kernel gives (an enum name, or on 5.10 the
// function that freed it, kfree_skb_list).
func TestDropsSent(t *testing.T) {
	ns := testnet.New(t)
	port := closedPort(t, ns) // anything: nothing gets through
	if err := ns.Blackhole(); errors.Is(err, testnet.ErrNoNetem) {
		t.Skip("this kernel has no sch_netem (make vmtest runs this on Debian's kernels, which have it; cmd/socktrace's TestDropsSentNft covers this host with nftables)")
	} else if err != nil {
		t.Fatal(err)
	}
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	namer := dropNamer(t, c.tr)
	local := failedConnect(t, ns, port, "timed-out")
	var closed events.Transition
	c.waitForIn(t, 10*time.Second, "the timed-out connect's close", func(recs []events.Transition) bool {
		for _, r := range recs {
			if r.Old == tcpstate.SynSent && r.New == tcpstate.Close && int(r.SPort) == local {
				closed = r
				return true
			}
		}
		return false
	})
	syns := uint32(closed.SynRetrans) + 1
	if closed.Drops != syns || closed.Drops < 2 {
		t.Errorf("close of a connect whose SYNs were all dropped: %d drops, want %d (its SYNs, %d retransmitted)", closed.Drops, syns, closed.SynRetrans)
	}
	if closed.DropDir != events.DropSent {
		t.Errorf("drop direction %q, want sent", closed.DropDir)
	}
	name := namer.Name(closed.DropReason)
	checkReasonName(t, c.tr, name)
	t.Logf("kernel gives %v: %d SYNs dropped, reason %s", c.tr.DropReasons(), closed.Drops, name)

	counts, _, err := c.tr.DropCounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, d := range counts {
		if d.Key.Dest.Netns == ns.Inode && int(d.Key.Dest.DPort) == port && d.Key.Dir == events.DropSent {
			total += d.N
		}
	}
	if total != uint64(closed.Drops) {
		t.Errorf("drop counters of the destination: %d, want %d", total, closed.Drops)
	}
}

// netstat reads a TcpExt counter of the namespace (/proc/net/netstat).
func netstat(t *testing.T, ns *testnet.NS, name string) uint64 {
	t.Helper()
	var v uint64
	ns.Run(t, func() error {
		// thread-self: /proc/net is the thread group leader's namespace.
		b, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(names) == 0 || names[0] != "TcpExt:" || len(vals) != len(names) {
				continue
			}
			for j, n := range names {
				if n == name {
					v, err = strconv.ParseUint(vals[j], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no TcpExt %s in /proc/net/netstat", name)
	})
	return v
}

// TestDropsReceivingSocket: a client with IP_MINTTL 255 connects over
// loopback (TTL 64): TCP drops every SYN-ACK once it has found the
// client's socket (TCPMinTTLDrop). The packet has no socket attached on
// loopback; since 6.11 the kernel names the receiving socket (rx_sk), so
// the close says as many drops as the kernel counted, received. Before
// 6.11 the kernel does not say, and the drop is of no socket.
func TestDropsReceivingSocket(t *testing.T) {
	ns := testnet.New(t)
	port := ns.Serve(t, "127.0.0.1:0", func(c net.Conn) { c.Close() })
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}})
	namer := dropNamer(t, c.tr)
	before := netstat(t, ns, "TCPMinTTLDrop")
	var local int
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MINTTL, 255); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if !errors.Is(err, unix.ETIMEDOUT) {
			return fmt.Errorf("connect whose SYN-ACKs are under its minimum TTL: %v, want ETIMEDOUT", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		local = sa.(*unix.SockaddrInet4).Port
		return nil
	})
	dropped := netstat(t, ns, "TCPMinTTLDrop") - before
	if dropped == 0 {
		t.Fatal("the kernel dropped no SYN-ACK under the minimum TTL: the test proves nothing")
	}
	var closed events.Transition
	c.waitFor(t, "the connect's close", func(recs []events.Transition) bool {
		for _, r := range recs {
			if r.Old == tcpstate.SynSent && r.New == tcpstate.Close && int(r.SPort) == local {
				closed = r
				return true
			}
		}
		return false
	})
	if !kernelver.AtLeast(6, 11) {
		t.Skipf("the kernel names no receiving socket (rx_sk of skb:kfree_skb, 6.11+): %d drops on the socket, %d by the kernel", closed.Drops, dropped)
	}
	if uint64(closed.Drops) != dropped || closed.DropDir != events.DropReceived {
		t.Errorf("close: %d drops, direction %q; want %d (TCPMinTTLDrop), received", closed.Drops, closed.DropDir, dropped)
	}
	t.Logf("%d SYN-ACKs dropped, reason %s", closed.Drops, namer.Name(closed.DropReason))
}

// TestNoDropsOnCleanClose: when the server closes first, the client's
// FIN reaches an orphaned server socket, which is destroyed with it in
// its queue (QUEUE_PURGE on kernels with reasons): a packet the socket
// received, not one dropped on the way, so no record of either side
// counts a drop.
func TestNoDropsOnCleanClose(t *testing.T) {
	ns := testnet.New(t)
	c := startCollector(t, events.Options{Filter: events.KernelFilter{Netns: ns.Inode}, Kinds: events.KindsOf(events.KindDrop)})
	const n = 5
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		for i := 0; i < n; i++ {
			cl, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			sv, err := ln.Accept()
			if err != nil {
				return err
			}
			// As the bench's load does: the server reads and closes
			// first; the client reads the end and closes, and its FIN
			// reaches a server socket that is gone but for its state.
			cl.Write([]byte("x"))
			sv.Read(make([]byte, 1))
			sv.Close()
			cl.Read(make([]byte, 1))
			cl.Close()
		}
		return nil
	})
	c.waitFor(t, "both sides closed", func(recs []events.Transition) bool {
		closes := 0
		for _, r := range recs {
			if r.New == tcpstate.Close {
				closes++
			}
		}
		return closes >= 2*n
	})
	for _, r := range c.stop(t) {
		if r.Drops != 0 || r.Kind == events.KindDrop {
			t.Errorf("a clean connection's record (kind %v) counts %d drops (reason %d, %v): %v -> %v port %d", r.Kind, r.Drops, r.DropReason, r.DropDir, r.Old, r.New, r.SPort)
		}
	}
}
