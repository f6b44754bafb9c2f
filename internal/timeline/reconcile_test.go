package timeline

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

func sock(cookie uint64, st tcpstate.State, netns uint32, inode uint32) snapshot.Socket {
	return snapshot.Socket{Cookie: cookie, State: st, Netns: netns, Inode: inode, Family: unix.AF_INET,
		Src: lo, Dst: peer, SPort: uint16(5000 + cookie), DPort: 9092}
}

// TestReconcile: one table, one dump, each case a socket in a situation.
func TestReconcile(t *testing.T) {
	tb := New()
	// At start (dump 100..200): a listener, a time-wait socket, a socket
	// in a namespace that will go away, one in a namespace not dumped.
	tb.AddSnapshot([]snapshot.Socket{
		sock(1, tcpstate.Listen, 1, 11),
		sock(2, tcpstate.TimeWait, 1, 0),
		sock(3, tcpstate.Established, 2, 13),
		sock(4, tcpstate.Established, 3, 14),
	}, procs.Table{}, 100, 200)
	// Traced since: 5 connected (its close will be lost), 6 went to
	// fin-wait-2 and closed unseen (its time-wait socket remains), 7
	// went established (its close-wait will be lost), 8 is born during
	// the next dump, 9 closes after the dump began.
	tb.Apply(tr(300, 5, tcpstate.Close, tcpstate.SynSent))
	tb.Apply(tr(310, 5, tcpstate.SynSent, tcpstate.Established))
	tb.Apply(tr(320, 6, tcpstate.Close, tcpstate.SynSent))
	tb.Apply(tr(330, 6, tcpstate.SynSent, tcpstate.Established))
	tb.Apply(tr(340, 6, tcpstate.Established, tcpstate.FinWait1))
	tb.Apply(tr(350, 7, tcpstate.Close, tcpstate.SynSent))
	tb.Apply(tr(360, 7, tcpstate.SynSent, tcpstate.Established))
	tb.Apply(tr(370, 9, tcpstate.Close, tcpstate.SynSent))
	tb.Mark(1000)
	tb.Apply(tr(1050, 8, tcpstate.Close, tcpstate.SynSent))
	tb.Apply(tr(1060, 9, tcpstate.SynSent, tcpstate.Close))

	d := &Dump{
		Start: 1000, End: 1100,
		Netns: map[uint32]bool{1: true},
		Gone:  map[uint32]bool{2: true},
		Sockets: []snapshot.Socket{
			sock(1, tcpstate.Listen, 1, 11),
			// 2's time-wait ran out: not in the dump.
			sock(6, tcpstate.TimeWait, 1, 0),      // 6's time-wait socket
			sock(7, tcpstate.CloseWait, 1, 17),    // moved unseen
			sock(9, tcpstate.SynSent, 1, 19),      // dumped before it closed
			sock(10, tcpstate.Established, 1, 20), // born unseen
			sock(11, tcpstate.TimeWait, 1, 0),     // someone's time-wait
			sock(12, tcpstate.SynRecv, 1, 0),      // a request socket
		},
		Owners: procs.Table{20: {{PID: 99, Comm: "app"}}},
	}
	res := tb.Reconcile(d)

	closed := map[uint64]bool{}
	for _, r := range res.Closed {
		closed[r.Cookie] = true
		if !r.CloseNotSeen {
			t.Errorf("closed row %d without CloseNotSeen", r.Cookie)
		}
	}
	tests := []struct {
		cookie uint64
		live   bool
		state  tcpstate.State
		closed bool
		why    string
	}{
		{1, true, tcpstate.Listen, false, "in the dump: kept"},
		{2, false, 0, false, "a time-wait socket of the snapshot that ran out: dropped, not counted as a lost close"},
		{3, false, 0, true, "its namespace went away: closed"},
		{4, true, tcpstate.Established, false, "its namespace was not dumped: no evidence"},
		{5, false, 0, true, "not in the dump: its close was lost"},
		{6, false, 0, true, "only its time-wait socket is left: the full socket closed unseen"},
		{7, true, tcpstate.CloseWait, false, "state corrected"},
		{8, true, tcpstate.SynSent, false, "born during the dump: left for the next one"},
		{9, false, 0, false, "closed after the dump began: not added back"},
		{10, true, tcpstate.Established, false, "born unseen: added"},
		{11, false, 0, false, "a time-wait socket: counted, not a row"},
		{12, false, 0, false, "a request socket: counted, not a row"},
	}
	for _, tt := range tests {
		r := tb.Lookup(tt.cookie)
		if (r != nil) != tt.live || (r != nil && r.State != tt.state) || closed[tt.cookie] != tt.closed {
			t.Errorf("socket %d (%s): live %v (state %v), closed %v; want live %v (%v), closed %v",
				tt.cookie, tt.why, r != nil, stateOf(r), closed[tt.cookie], tt.live, tt.state, tt.closed)
		}
	}
	if len(res.Closed) != 3 || len(res.Added) != 1 || res.Changed != 1 {
		t.Errorf("closed %d added %d changed %d, want 3 1 1", len(res.Closed), len(res.Added), res.Changed)
	}
	if res.Minis[tcpstate.TimeWait] != 2 || res.Minis[tcpstate.SynRecv] != 1 {
		t.Errorf("minis %v: want 2 time-wait (6's and 11), 1 syn-recv", res.Minis)
	}
	if a := tb.Lookup(10); a == nil || !a.OwnerKnown || a.OwnerPID != 99 {
		t.Errorf("added socket's owner: %+v", a)
	}
	if got := tb.Stats().Closed; got != 4 {
		t.Errorf("closed history holds %d, want 9 and the 3 closed by reconciliation", got)
	}
	var ns []uint32
	tb.Namespaces(func(n uint32, _ int) { ns = append(ns, n) })
	if len(ns) != 2 {
		t.Errorf("namespaces with rows %v, want 1 and 3", ns)
	}
}

func stateOf(r *Row) tcpstate.State {
	if r == nil {
		return 0
	}
	return r.State
}

// TestMaxLive: a full table does not grow, and counts what it refused.
func TestMaxLive(t *testing.T) {
	tb := New()
	tb.SetMaxLive(2)
	for c := uint64(1); c <= 5; c++ {
		r := tb.Apply(tr(c*10, c, tcpstate.Close, tcpstate.SynSent))
		if (r == nil) != (c > 2) {
			t.Errorf("socket %d: row %v", c, r)
		}
	}
	if s := tb.Stats(); s.Live != 2 || s.Untracked != 3 {
		t.Errorf("stats %+v, want 2 live, 3 untracked", s)
	}
	// A socket already remembered is still followed.
	if r := tb.Apply(tr(100, 1, tcpstate.SynSent, tcpstate.Established)); r == nil || r.State != tcpstate.Established {
		t.Errorf("remembered socket not followed: %v", r)
	}
}

// TestReconcileNoTimeWait: a dump without time-wait sockets says nothing
// of the table's time-wait rows, but a full socket it lacks is gone.
func TestReconcileNoTimeWait(t *testing.T) {
	tb := New()
	tb.AddSnapshot([]snapshot.Socket{sock(1, tcpstate.TimeWait, 1, 0), sock(2, tcpstate.FinWait2, 1, 12)}, procs.Table{}, 100, 200)
	tb.Mark(1000)
	res := tb.Reconcile(&Dump{Start: 1000, End: 1100, Netns: map[uint32]bool{1: true}, NoTimeWait: true})
	if tb.Lookup(1) == nil || tb.Lookup(2) != nil || len(res.Closed) != 1 {
		t.Errorf("time-wait row kept %v, fin-wait-2 row gone %v, closed %d; want true, true, 1",
			tb.Lookup(1) != nil, tb.Lookup(2) == nil, len(res.Closed))
	}
}
