package snapshot_test

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// sockID returns the cookie and inode of a socket, as the kernel sees them.
func sockID(t *testing.T, c syscall.Conn) (cookie uint64, inode uint32) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		cookie, err = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
		var st unix.Stat_t
		if err == nil {
			err = unix.Fstat(int(fd), &st)
			inode = uint32(st.Ino)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return cookie, inode
}

// TestDumpNamespace builds known sockets in a namespace and checks what
// the dump says about each, joined by cookie.
func TestDumpNamespace(t *testing.T) {
	ns := testnet.New(t)
	var ln *net.TCPListener
	var client, server *net.TCPConn
	var full int // a listener with backlog 1 and a full accept queue
	var fullPort int
	ns.Run(t, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		client = c.(*net.TCPConn)
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		server = s.(*net.TCPConn)
		if _, err := client.Write(make([]byte, 100)); err != nil {
			return err
		}

		full, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(full, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}); err != nil {
			return err
		}
		if err := unix.Listen(full, 1); err != nil {
			return err
		}
		sa, _ := unix.Getsockname(full)
		fullPort = sa.(*unix.SockaddrInet6).Port
		for i := 0; i < 2; i++ {
			c, err := net.Dial("tcp", net.JoinHostPort("::1", itoa(fullPort)))
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
		}
		return nil
	})
	t.Cleanup(func() { ln.Close(); client.Close(); server.Close(); unix.Close(full) })
	time.Sleep(50 * time.Millisecond) // let the 100 bytes land

	socks, err := snapshot.Dump(snapshot.Options{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	byCookie := map[uint64]snapshot.Socket{}
	for _, s := range socks {
		if s.Netns != ns.Inode {
			t.Errorf("socket %+v: netns %d, want %d", s, s.Netns, ns.Inode)
		}
		byCookie[s.Cookie] = s
	}

	// Go listens with MPTCP by default (Go 1.24+): the TCP socket in the
	// tables is the MPTCP socket's subflow, with the same inode but a
	// cookie of its own, so SO_COOKIE on the listener's fd differs from
	// what sock_diag (and BPF) report. Find the listener by inode.
	_, li := sockID(t, ln)
	lc := uint64(0)
	for _, s := range socks {
		if s.Inode == li {
			lc = s.Cookie
		}
	}
	cc, ci := sockID(t, client)
	sc, si := sockID(t, server)
	lp := netip.MustParseAddrPort(ln.Addr().String())
	cp := netip.MustParseAddrPort(client.LocalAddr().String())

	check := func(name string, cookie uint64, inode uint32, state tcpstate.State, local, peer netip.AddrPort, recvQ int) {
		t.Helper()
		s, ok := byCookie[cookie]
		if !ok {
			t.Errorf("%s (cookie %d) not in the dump: %+v", name, cookie, socks)
			return
		}
		if s.State != state || s.Inode != inode {
			t.Errorf("%s: state %s inode %d, want %s %d", name, s.State, s.Inode, state, inode)
		}
		if netip.AddrPortFrom(s.Src, s.SPort) != local || netip.AddrPortFrom(s.Dst, s.DPort) != peer {
			t.Errorf("%s: %s:%d -> %s:%d, want %s -> %s", name, s.Src, s.SPort, s.Dst, s.DPort, local, peer)
		}
		if recvQ >= 0 && s.RecvQ != uint32(recvQ) {
			t.Errorf("%s: Recv-Q %d, want %d", name, s.RecvQ, recvQ)
		}
	}
	check("listener", lc, li, tcpstate.Listen, lp, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), 0)
	check("client", cc, ci, tcpstate.Established, cp, lp, 0)
	check("server", sc, si, tcpstate.Established, lp, cp, 100)

	// The full listener: Recv-Q is the accept queue (2 waiting, one
	// over the backlog of 1, as Linux allows), Send-Q the backlog.
	var fl *snapshot.Socket
	for i := range socks {
		if socks[i].State == tcpstate.Listen && int(socks[i].SPort) == fullPort {
			fl = &socks[i]
		}
	}
	if fl == nil {
		t.Fatalf("full listener on port %d not in the dump", fullPort)
	}
	if fl.RecvQ != 2 || fl.SendQ != 1 || fl.Family != unix.AF_INET6 {
		t.Errorf("full listener: Recv-Q %d Send-Q %d family %d, want 2, 1, AF_INET6", fl.RecvQ, fl.SendQ, fl.Family)
	}

	// Owners, as ss -p finds them.
	owners := procs.Scan(map[uint32]bool{si: true})
	if o := owners[si]; len(o) != 1 || o[0].PID != uint32(os.Getpid()) {
		t.Errorf("owners of the server socket: %+v, want this process", o)
	}
}

// TestDumpStateFilter checks the state mask goes into the request.
func TestDumpStateFilter(t *testing.T) {
	ns := testnet.New(t)
	ns.Run(t, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		return nil
	})
	for _, tt := range []struct {
		states tcpstate.Mask
		want   map[tcpstate.State]int
	}{
		{tcpstate.MaskOf(tcpstate.Listen), map[tcpstate.State]int{tcpstate.Listen: 1}},
		{tcpstate.MaskOf(tcpstate.Established), map[tcpstate.State]int{tcpstate.Established: 2}},
		{0, map[tcpstate.State]int{tcpstate.Listen: 1, tcpstate.Established: 2}},
		{tcpstate.MaskOf(tcpstate.TimeWait), map[tcpstate.State]int{}},
	} {
		socks, err := snapshot.Dump(snapshot.Options{Netns: ns.Path(), States: tt.states})
		if err != nil {
			t.Fatal(err)
		}
		got := map[tcpstate.State]int{}
		for _, s := range socks {
			got[s.State]++
		}
		if len(got) != len(tt.want) {
			t.Errorf("states %s: got %v, want %v", tt.states, got, tt.want)
		}
		for st, n := range tt.want {
			if got[st] != n {
				t.Errorf("states %s: got %v, want %v", tt.states, got, tt.want)
			}
		}
	}
	if _, err := snapshot.Dump(snapshot.Options{Netns: "/nonexistent"}); err == nil {
		t.Error("dump of a missing namespace: no error")
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}

// TestDumpListenersAllocates: a dump of the listeners only allocates for
// the listeners, not for every socket of the namespace. The listeners
// package makes one every second: with 100,000 sockets held, sizing it
// for all of them made 17 MiB of garbage a second, and the agent's
// heap doubled.
func TestDumpListenersAllocates(t *testing.T) {
	ns := testnet.New(t)
	const conns = 2000
	ns.Run(t, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return err
			}
			s, err := l.Accept()
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close(); s.Close() })
		}
		return nil
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	socks, err := snapshot.Dump(snapshot.Options{Netns: ns.Path(), States: tcpstate.MaskOf(tcpstate.Listen)})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 {
		t.Fatalf("listed %d listeners, want 1", len(socks))
	}
	all := uint64(2*conns) * uint64(unsafe.Sizeof(snapshot.Socket{}))
	if got := after.TotalAlloc - before.TotalAlloc; got > all/4 {
		t.Errorf("listing 1 listener among %d sockets allocated %d bytes; room for all of them is %d", 2*conns+1, got, all)
	}
}
