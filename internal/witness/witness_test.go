package witness

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestCountsOneNamespace: the witness counts every transition of the
// sockets of its namespace (a listener and n connections, 10 transitions
// each), by state, and the destroys, and nothing of another namespace.
// Both kinds of programs: keyed by socket cookie (where the kernel allows
// it, 5.12+) and by socket address.
func TestCountsOneNamespace(t *testing.T) {
	testnet.RequireRoot(t)
	for _, byAddr := range []bool{false, true} {
		t.Run(map[bool]string{false: "cookie", true: "address"}[byAddr], func(t *testing.T) {
			countsOneNamespace(t, byAddr)
		})
	}
}

func countsOneNamespace(t *testing.T, byAddr bool) {
	ns, other := testnet.New(t), testnet.New(t)
	w, err := open(Filter{Netns: ns.Inode}, false, byAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 50
	for _, s := range []*testnet.NS{ns, other} {
		s.Run(t, func() error {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i++ {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Read(make([]byte, 1)) // the client's FIN: the server closes second
					c.Close()
				}
			}()
			for i := 0; i < n; i++ {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					return err
				}
				c.Close()
			}
			wg.Wait()
			return ln.Close()
		})
	}
	// The last server sockets' last-ack -> close and destroy come with
	// the client's last ACK, a moment later on a slow machine.
	var c Counts
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if c, err = w.Counts(); err != nil {
			t.Fatal(err)
		}
		if c.Seen() >= 2+10*n && c.Destroys()-unconnected(c) >= 2*n+1 && c.SetStateFilter.OtherNetns >= 2+10*n || time.Now().After(deadline) {
			break
		}
	}
	if c.SetState.Misses != 0 {
		t.Skipf("the kernel skipped the witness %d times (a busy machine): counts not exact", c.SetState.Misses)
	}
	want := map[[2]tcpstate.State]uint64{
		{tcpstate.Close, tcpstate.Listen}:          1,
		{tcpstate.Listen, tcpstate.Close}:          1,
		{tcpstate.Close, tcpstate.SynSent}:         n,
		{tcpstate.SynSent, tcpstate.Established}:   n,
		{tcpstate.Established, tcpstate.FinWait1}:  n,
		{tcpstate.FinWait1, tcpstate.FinWait2}:     n,
		{tcpstate.FinWait2, tcpstate.Close}:        n,
		{tcpstate.Listen, tcpstate.SynRecv}:        n,
		{tcpstate.SynRecv, tcpstate.Established}:   n,
		{tcpstate.Established, tcpstate.CloseWait}: n,
		{tcpstate.CloseWait, tcpstate.LastAck}:     n,
		{tcpstate.LastAck, tcpstate.Close}:         n,
	}
	for o, row := range c.Transitions {
		for nw, got := range row {
			k := [2]tcpstate.State{tcpstate.State(o), tcpstate.State(nw)}
			if got != want[k] {
				t.Errorf("%v -> %v: %d seen, want %d", k[0], k[1], got, want[k])
			}
		}
	}
	if got := c.Seen(); got != 2+10*n {
		t.Errorf("%d transitions seen, want %d", got, 2+10*n)
	}
	// Every invocation is counted, seen or left out by the filter (the
	// other namespace's at least; other tests' sockets may come and go
	// while the counts are read, one by one).
	f := c.SetStateFilter
	if f.Invoked < c.Seen()+2+10*n || f.OtherNetns < 2+10*n || f.NetnsZero != 0 {
		t.Errorf("filter counts %+v: want at least the %d seen and the %d made in the other namespace invoked, and no namespace read as 0", f, c.Seen(), 2+10*n)
	}
	// Destroyed: each connection's two sockets (in close) and the
	// listener; sockets never connected (Go's net package opens some to
	// probe the stack) are destroyed without a transition: odd, in close,
	// none seen.
	for _, o := range c.Odd {
		if o.State != tcpstate.Close || o.Last != "none" {
			t.Errorf("socket %d destroyed in %v, its last transition seen %s", o.Cookie, o.State, o.Last)
		}
	}
	unconnected := unconnected(c)
	if got := c.Destroys() - unconnected; got != 2*n+1 {
		t.Errorf("%d destroys seen (%d of sockets never connected), want %d", got+unconnected, unconnected, 2*n+1)
	}
}

// unconnected counts the sockets destroyed without a transition seen:
// never connected (Go's net package opens some to probe the stack).
func unconnected(c Counts) uint64 {
	var n uint64
	for _, o := range c.Odd {
		if o.State == tcpstate.Close && o.Last == "none" {
			n++
		}
	}
	return n
}
