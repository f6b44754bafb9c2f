package listeners

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestTracker: what a sequence of polls makes of one listener.
func TestTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lo := netip.MustParseAddr("127.0.0.1")
	l := func(drops uint32) Listener {
		return Listener{Netns: 7, Addr: lo, Port: 9093, Cookie: 42, Drops: drops, Backlog: 1, Queue: 2}
	}
	type poll struct {
		at    time.Duration
		drops uint32
		gone  bool
		want  Kind   // 0: no event
		total uint64 // of the event
		drop  uint64 // since the last event
	}
	for _, c := range []struct {
		name  string
		polls []poll
	}{
		{"drops before the trace are a baseline", []poll{{0, 90, false, 0, 0, 0}, {time.Second, 90, false, 0, 0, 0}}},
		{"a rise is an overflow, each rise an alert", []poll{
			{0, 5, false, 0, 0, 0}, {time.Second, 25, false, Overflow, 20, 20}, {2 * time.Second, 30, false, Overflow, 25, 5},
		}},
		{"recovered after RecoverAfter without drops", []poll{
			{0, 0, false, 0, 0, 0}, {time.Second, 3, false, Overflow, 3, 3},
			{5 * time.Second, 3, false, 0, 0, 0}, {6 * time.Second, 3, false, Recovered, 3, 0},
			{7 * time.Second, 3, false, 0, 0, 0}, {8 * time.Second, 4, false, Overflow, 4, 1},
		}},
		{"recovered when it closes", []poll{
			{0, 0, false, 0, 0, 0}, {time.Second, 3, false, Overflow, 3, 3}, {2 * time.Second, 0, true, Recovered, 3, 0},
			{3 * time.Second, 0, true, 0, 0, 0},
		}},
		{"a quiet listener that closes says nothing", []poll{{0, 4, false, 0, 0, 0}, {time.Second, 0, true, 0, 0, 0}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := NewTracker()
			for i, p := range c.polls {
				poll := &Poll{At: t0.Add(p.at), Netns: map[uint32]bool{7: true}}
				if !p.gone {
					poll.Listeners = []Listener{l(p.drops)}
				}
				var ev *Event
				for _, s := range tr.Samples(poll, nil) {
					if e := tr.Apply(&s); e != nil {
						if ev != nil {
							t.Fatalf("poll %d: two events", i)
						}
						ev = e
					}
				}
				switch {
				case p.want == 0 && ev != nil:
					t.Errorf("poll %d: event %+v, want none", i, ev)
				case p.want != 0 && ev == nil:
					t.Errorf("poll %d: no event, want kind %d", i, p.want)
				case ev != nil && (ev.Kind != p.want || ev.Total != p.total || ev.Dropped != p.drop):
					t.Errorf("poll %d: event kind %d total %d dropped %d, want kind %d total %d dropped %d", i, ev.Kind, ev.Total, ev.Dropped, p.want, p.total, p.drop)
				}
			}
		})
	}
}

// TestOverflowing: a connect reaches the listener bound to its address
// or the wildcard, in its namespace, on its port.
func TestOverflowing(t *testing.T) {
	tr := NewTracker()
	at := time.Unix(1000, 0)
	any4 := netip.MustParseAddr("0.0.0.0")
	tr.Apply(&Sample{At: at, Listener: Listener{Netns: 7, Addr: any4, Port: 80, Cookie: 1, Drops: 0}, Baseline: true})
	tr.Apply(&Sample{At: at.Add(time.Second), Listener: Listener{Netns: 7, Addr: any4, Port: 80, Cookie: 1, Drops: 9}})
	for _, c := range []struct {
		netns uint32
		addr  string
		port  uint16
		want  bool
	}{
		{7, "10.0.0.1", 80, true}, {7, "127.0.0.1", 80, true}, {8, "127.0.0.1", 80, false}, {7, "127.0.0.1", 81, false},
	} {
		got := tr.Overflowing(c.netns, netip.MustParseAddr(c.addr), c.port)
		if (got != nil) != c.want || (got != nil && got.Total != 9) {
			t.Errorf("Overflowing(%d, %s, %d) = %+v, want found %v with 9 drops", c.netns, c.addr, c.port, got, c.want)
		}
	}
}

// TestDropsMatchKernel: a listener with backlog 1 that never accepts,
// and 20 clients retrying their SYNs: the drops the polls count are the
// kernel's ListenOverflows (the namespace's /proc/net/netstat), exactly.
func TestDropsMatchKernel(t *testing.T) {
	ns := testnet.New(t)
	port := ns.FullListener(t, 1)
	before := ns.Netstat(t)
	tr := NewTracker()
	take := func() []*Event {
		p, err := Dump([]string{ns.Path()}, false, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !p.Netns[ns.Inode] {
			t.Fatalf("poll of %v, want namespace %d", p.Netns, ns.Inode)
		}
		var evs []*Event
		for _, s := range tr.Samples(p, nil) {
			if e := tr.Apply(&s); e != nil {
				evs = append(evs, e)
			}
		}
		return evs
	}
	if evs := take(); len(evs) != 0 {
		t.Fatalf("first poll: %+v, want no event (a baseline)", evs)
	}
	// 20 clients: non-blocking connects, whose SYNs the full listener
	// drops; the kernel retransmits them after a second.
	var fds []int
	ns.Run(t, func() error {
		for i := 0; i < 20; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != unix.EINPROGRESS {
				return err
			}
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond)
	for _, fd := range fds {
		unix.Close(fd) // no more SYNs
	}
	time.Sleep(100 * time.Millisecond)
	evs := take()
	after := ns.Netstat(t)
	overflows := after["ListenOverflows"] - before["ListenOverflows"]
	if overflows < 20 {
		t.Fatalf("the kernel counted %d listen overflows, want at least the 20 first SYNs", overflows)
	}
	if len(evs) != 1 || evs[0].Kind != Overflow || evs[0].Port != uint16(port) {
		t.Fatalf("events %+v, want one overflow of port %d", evs, port)
	}
	if e := evs[0]; e.Total != overflows || e.Dropped != overflows || e.Backlog != 1 || e.Queue != 2 {
		t.Errorf("overflow: %d dropped (%d in all), backlog %d, queue %d; want the kernel's %d ListenOverflows, backlog 1, queue 2",
			e.Dropped, e.Total, e.Backlog, e.Queue, overflows)
	}
	if drops := after["ListenDrops"] - before["ListenDrops"]; drops != overflows {
		t.Errorf("ListenDrops rose by %d, ListenOverflows by %d: want the same (every drop an overflow)", drops, overflows)
	}
}

// TestDumpNamespaceGone: a namespace gone by the time of the poll is
// left out of it, without an error; one that is there is in it.
func TestDumpNamespaceGone(t *testing.T) {
	gone, here := testnet.New(t), testnet.New(t)
	path := gone.Path()
	gone.Close()
	p, err := Dump([]string{path, here.Path()}, false, false, time.Now())
	if err != nil || len(p.Netns) != 1 || !p.Netns[here.Inode] || len(p.Listeners) != 0 {
		t.Errorf("Dump: %+v, %v; want only namespace %d, no listener, no error", p, err, here.Inode)
	}
}

// TestRecoveredWhenClosed: an overflowing listener that closes is
// listen-recovered at the next poll, marked closed, and kept for the
// summary's and the metrics' totals.
func TestRecoveredWhenClosed(t *testing.T) {
	ns := testnet.New(t)
	var lfd, port int
	ns.Run(t, func() error {
		// A listener of backlog 0 (it holds one connection) with that
		// one connection waiting: the next SYN is dropped.
		var err error
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		if err := unix.Listen(lfd, 0); err != nil {
			return err
		}
		sa, _ := unix.Getsockname(lfd)
		port = sa.(*unix.SockaddrInet4).Port
		for i := 0; i < 2; i++ { // the first waits, the second's SYN is dropped
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(fd) })
			unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	})
	tr := NewTracker()
	poll := func() []*Event {
		p, err := Dump([]string{ns.Path()}, false, false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var evs []*Event
		for _, s := range tr.Samples(p, nil) {
			if e := tr.Apply(&s); e != nil {
				evs = append(evs, e)
			}
		}
		return evs
	}
	// Its first poll comes after the drop: that one is the baseline.
	// Make one more drop, then close it.
	poll()
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	if evs := poll(); len(evs) != 1 || evs[0].Kind != Overflow || evs[0].Dropped != 1 {
		t.Fatalf("after one more SYN: %+v, want an overflow of 1", evs)
	}
	unix.Close(lfd)
	evs := poll()
	if len(evs) != 1 || evs[0].Kind != Recovered || !evs[0].Closed || evs[0].Total != 1 {
		t.Fatalf("after the listener closed: %+v, want it recovered, closed, 1 dropped", evs)
	}
	if d := tr.Dropping(); len(d) != 1 || !d[0].Closed || d[0].Total != 1 || d[0].Port != uint16(port) {
		t.Errorf("Dropping: %+v, want the closed listener with its drop", d)
	}
	if evs := poll(); len(evs) != 0 {
		t.Errorf("next poll: %+v, want nothing more", evs)
	}
}

// TestReplayFromTheMiddle: a replay whose first sample of a listener is
// not its first (the file with the baseline rotated away) counts the
// rise from the count the live run had.
func TestReplayFromTheMiddle(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	live := NewTracker()
	at := time.Unix(1000, 0)
	var recorded []Sample
	for i, drops := range []uint32{500, 520, 530} {
		p := &Poll{At: at.Add(time.Duration(i) * time.Second), Netns: map[uint32]bool{7: true},
			Listeners: []Listener{{Netns: 7, Addr: lo, Port: 9093, Cookie: 1, Drops: drops}}}
		for _, s := range live.Samples(p, nil) {
			live.Apply(&s)
			recorded = append(recorded, s)
		}
	}
	replay := NewTracker()
	var got []uint64
	for _, s := range recorded[2:] { // the baseline and the first rise are gone
		if e := replay.Apply(&s); e != nil {
			got = append(got, e.Dropped)
		}
	}
	if len(got) != 1 || got[0] != 10 {
		t.Errorf("replayed from the third sample: dropped %v, want [10]", got)
	}
}
