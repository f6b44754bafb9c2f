package timeline

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

var (
	lo   = netip.MustParseAddr("127.0.0.1")
	peer = netip.MustParseAddr("10.0.0.9")
)

func tr(ktime, cookie uint64, old, new tcpstate.State) *record.Transition {
	return &record.Transition{Transition: events.Transition{Ktime: ktime, Cookie: cookie, Old: old, New: new, Family: unix.AF_INET,
		Src: lo, Dst: peer, SPort: 5000, DPort: 9092, Netns: 1}}
}

func TestSnapshotThenTransitions(t *testing.T) {
	tb := New()
	owners := procs.Table{77: {{PID: 42, Comm: "kafka", FD: 9}}}
	tb.AddSnapshot([]snapshot.Socket{
		{Cookie: 1, State: tcpstate.Established, Inode: 77, Netns: 1, Family: unix.AF_INET, Src: lo, Dst: peer, SPort: 5000, DPort: 9092},
		{Cookie: 2, State: tcpstate.Listen, Inode: 78, Netns: 1, Family: unix.AF_INET, Src: lo, SPort: 8080},
	}, owners, 100, 200)

	tests := []struct {
		name      string
		in        *record.Transition
		wantState tcpstate.State
		wantOwner uint32 // 0: unknown
		wantPre   bool
		wantRows  int
	}{
		{"before the snapshot: already reflected", tr(50, 1, tcpstate.SynSent, tcpstate.Established), tcpstate.Established, 42, true, 2},
		{"during the snapshot, from the listed state: applied", tr(150, 1, tcpstate.Established, tcpstate.CloseWait), tcpstate.CloseWait, 42, true, 2},
		{"during the snapshot, already listed: not applied twice", tr(160, 1, tcpstate.Established, tcpstate.CloseWait), tcpstate.CloseWait, 42, true, 2},
		{"after: applied, softirq owner filled from /proc", tr(300, 1, tcpstate.CloseWait, tcpstate.LastAck), tcpstate.LastAck, 42, true, 2},
		{"child of a pre-existing listener gets its owner", func() *record.Transition {
			x := tr(400, 3, tcpstate.Listen, tcpstate.SynRecv)
			x.SPort = 8080
			return x
		}(), tcpstate.SynRecv, 0, false, 3},
		{"closing removes the row", tr(500, 1, tcpstate.LastAck, tcpstate.Close), tcpstate.Close, 42, true, 2},
		{"a socket first seen mid-life is pre-existing, owner unknown", tr(600, 9, tcpstate.Established, tcpstate.FinWait1), tcpstate.FinWait1, 0, true, 3},
	}
	for _, tt := range tests {
		r := tb.Apply(tt.in)
		if r.State != tt.wantState || r.Preexisting != tt.wantPre {
			t.Errorf("%s: state %s pre-existing %v, want %s %v", tt.name, r.State, r.Preexisting, tt.wantState, tt.wantPre)
		}
		if tt.wantOwner != 0 && (!tt.in.OwnerKnown || tt.in.OwnerPID != tt.wantOwner || r.OwnerPID != tt.wantOwner) {
			t.Errorf("%s: transition owner %v/%d row owner %d, want %d", tt.name, tt.in.OwnerKnown, tt.in.OwnerPID, r.OwnerPID, tt.wantOwner)
		}
		if tb.Len() != tt.wantRows {
			t.Errorf("%s: %d rows, want %d", tt.name, tb.Len(), tt.wantRows)
		}
	}
}

func TestListenerOwnerForChildren(t *testing.T) {
	tb := New()
	tb.AddSnapshot([]snapshot.Socket{{Cookie: 2, State: tcpstate.Listen, Inode: 78, Netns: 1, Family: unix.AF_INET, Src: lo, SPort: 8080}},
		procs.Table{78: {{PID: 7, Comm: "nginx", FD: 6}}}, 100, 200)
	child := tr(300, 3, tcpstate.Listen, tcpstate.SynRecv)
	child.SPort = 8080
	tb.Apply(child)
	if !child.OwnerKnown || child.OwnerPID != 7 || child.OwnerComm != "nginx" {
		t.Fatalf("accepted socket owner %v/%d/%q, want nginx 7", child.OwnerKnown, child.OwnerPID, child.OwnerComm)
	}
	// Later softirq transitions of the child keep that owner.
	next := tr(310, 3, tcpstate.SynRecv, tcpstate.Established)
	next.SPort = 8080
	tb.Apply(next)
	if next.OwnerPID != 7 {
		t.Errorf("established child owner %d, want 7", next.OwnerPID)
	}
	// Another port's child gets none.
	other := tr(320, 4, tcpstate.Listen, tcpstate.SynRecv)
	other.SPort = 8081
	tb.Apply(other)
	if other.OwnerKnown {
		t.Errorf("child on a port nobody listens on got owner %d", other.OwnerPID)
	}
}

func TestBPFOwnerWins(t *testing.T) {
	tb := New()
	tb.AddSnapshot([]snapshot.Socket{{Cookie: 1, State: tcpstate.Established, Inode: 77, Netns: 1}},
		procs.Table{77: {{PID: 42, Comm: "old", FD: 1}}}, 100, 200)
	x := tr(300, 1, tcpstate.Established, tcpstate.FinWait1)
	x.OwnerKnown, x.OwnerPID, x.OwnerComm = true, 43, "child"
	r := tb.Apply(x)
	if r.OwnerPID != 43 || x.OwnerPID != 43 {
		t.Errorf("owner %d/%d, want the one BPF saw close the socket (43)", r.OwnerPID, x.OwnerPID)
	}
}

func TestRawTracepointWithoutCookie(t *testing.T) {
	tb := New()
	a := tr(10, 0, tcpstate.Close, tcpstate.SynSent)
	a.SkAddr = 0xffff1
	tb.Apply(a)
	b := tr(20, 0, tcpstate.SynSent, tcpstate.Established)
	b.SkAddr = 0xffff1
	r := tb.Apply(b)
	if len(r.History) != 2 || r.Preexisting {
		t.Errorf("sockets without cookies are joined by address: history %v pre-existing %v", r.History, r.Preexisting)
	}
}

// TestClosedCap: closed sockets are remembered up to the cap, the oldest
// evicted first, and every eviction counted.
func TestClosedCap(t *testing.T) {
	tests := []struct{ cap, sockets, wantKept int }{
		{0, 5, 0},
		{3, 2, 2},
		{3, 3, 3},
		{3, 10, 3},
		{100, 1000, 100},
	}
	for _, tt := range tests {
		tb := NewCap(tt.cap)
		for c := 1; c <= tt.sockets; c++ {
			k := uint64(c * 10)
			tb.Apply(tr(k, uint64(c), tcpstate.Close, tcpstate.SynSent))
			tb.Apply(tr(k+1, uint64(c), tcpstate.SynSent, tcpstate.Established))
			tb.Apply(tr(k+2, uint64(c), tcpstate.Established, tcpstate.Close))
		}
		st := tb.Stats()
		if st.Live != 0 || st.Closed != tt.wantKept || st.Evicted != uint64(tt.sockets-tt.wantKept) {
			t.Errorf("cap %d, %d sockets: %+v, want 0 live, %d kept, %d evicted", tt.cap, tt.sockets, st, tt.wantKept, tt.sockets-tt.wantKept)
		}
		// The newest are kept, oldest first, each with its whole history.
		var got []uint64
		tb.Closed(func(r *Row) {
			got = append(got, r.Cookie)
			if len(r.History) != 3 || r.State != tcpstate.Close {
				t.Errorf("cap %d: closed row %d: state %s, %d steps", tt.cap, r.Cookie, r.State, len(r.History))
			}
		})
		for i, c := range got {
			if want := uint64(tt.sockets - tt.wantKept + i + 1); c != want {
				t.Errorf("cap %d, %d sockets: kept %v, want the last %d in order", tt.cap, tt.sockets, got, tt.wantKept)
				break
			}
		}
	}
}

// TestSince: a row knows when it entered its state.
func TestSince(t *testing.T) {
	tb := New()
	tb.AddSnapshot([]snapshot.Socket{{Cookie: 1, State: tcpstate.Established, Netns: 1, Family: unix.AF_INET, Src: lo, Dst: peer}}, nil, 100, 200)
	if r := tb.Lookup(1); r == nil || r.Since != 0 {
		t.Fatalf("snapshot row: %+v, want Since unknown (0)", r)
	}
	tb.Apply(tr(300, 1, tcpstate.Established, tcpstate.CloseWait))
	if r := tb.Lookup(1); r == nil || r.Since != 300 || r.State != tcpstate.CloseWait {
		t.Fatalf("after a transition: %+v, want close-wait since 300", r)
	}
}
