// Package timeline joins the sockets that existed when socktrace started
// (a sock_diag snapshot) with the transitions traced since, socket by
// socket, keyed by the socket cookie: one row per socket with its current
// state, its owner and the transitions seen. It applies reconciliation
// dumps to the table (reconcile.go); internal/reconcile says when to
// dump, and dumps.
package timeline

import (
	"net/netip"
	"time"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Step is one transition in a socket's history.
type Step struct {
	Ktime    uint64
	Old, New tcpstate.State
}

// Row is one socket.
type Row struct {
	Cookie   uint64
	Netns    uint32
	Family   uint16
	Src, Dst netip.Addr
	SPort    uint16
	DPort    uint16
	State    tcpstate.State

	// Preexisting: the socket existed before the trace began (it was in
	// the snapshot, or its first transition seen was not its birth).
	Preexisting bool
	InSnapshot  bool
	// Diag: the socket as the snapshot saw it, if InSnapshot; else nil
	// (most rows are born in the trace: a pointer keeps their 176 bytes
	// out of every row). Read it through Snap.
	Diag *snapshot.Socket

	// Owner: the process that owns the socket. From BPF (learned at
	// connect, listen or close) or from /proc for pre-existing sockets.
	OwnerKnown bool
	OwnerPID   uint32
	OwnerTID   uint32
	OwnerComm  string
	OwnerID    *identity.Identity // cgroup, unit, container, pod; nil if unknown
	// DNS: the answer the remote address came from (see
	// record.Transition.DNS); set by the pipeline.
	DNS *dnscache.Origin
	// Actual: the NAT backend of the connection (see
	// record.Transition.Actual); set by the pipeline.
	Actual netip.AddrPort
	Users  []procs.Owner // every holder found in /proc (ss -p)

	// Since: CLOCK_MONOTONIC time the socket entered State; 0 when not
	// known (a pre-existing socket that has not moved since the snapshot).
	Since uint64
	// History: the transitions seen, oldest first.
	History []Step
	steps   [6]Step // History's first home

	// Active: the socket is an active open (socktrace saw its connect).
	Active bool
	// Born: CLOCK_MONOTONIC time of the socket's birth (connect, listen,
	// accept) if socktrace saw it; 0 if not.
	Born uint64
	// Seen: CLOCK_MONOTONIC time of the latest evidence that the socket
	// exists: its last transition, or a dump that listed it.
	Seen uint64
	// CloseNotSeen: the socket was closed by reconciliation: the kernel
	// no longer had it, and its close was not seen (lost).
	CloseNotSeen bool

	// Drops: the socket's packets dropped on this host, as its latest
	// record said, with the last one's reason (named) and direction.
	Drops      uint32
	DropReason string
	DropDir    events.DropDir
}

// DefaultClosedCap is how many closed sockets a Table remembers by default.
const DefaultClosedCap = 10000

// Table holds the rows of live sockets, and of the most recently closed
// ones up to a cap: memory stays bounded however fast sockets churn.
type Table struct {
	rows map[key]*Row
	// closed is a ring of the last closedCap rows that closed; next is
	// where the next one goes; evicted counts those pushed out.
	closed    []*Row
	closedCap int
	next      int
	evicted   uint64
	// The snapshot was taken between these CLOCK_MONOTONIC times.
	snapStart, snapEnd uint64
	// Listening sockets by namespace and port, to give accepted sockets
	// the owner of their listener when BPF could not.
	listeners map[listenKey]*Row
	// maxLive caps the live rows (0: no cap); untracked counts the
	// sockets not remembered because the table was full.
	maxLive   int
	untracked uint64
	// kernelForgot: see Stats.KernelForgot.
	kernelForgot uint64
	// closedSince: while a reconciliation is pending, the cookies of the
	// sockets that closed at or after markK (they may be in its dump).
	closedSince map[uint64]bool
	markK       uint64
	// netns counts the live rows of each network namespace.
	netns map[uint32]int
}

// put makes r the live row of k.
func (t *Table) put(k key, r *Row) {
	if old := t.rows[k]; old != nil {
		t.netnsDrop(old.Netns)
	}
	t.rows[k] = r
	t.netns[r.Netns]++
}

// del drops the live row of k.
func (t *Table) del(k key) {
	if r := t.rows[k]; r != nil {
		delete(t.rows, k)
		t.netnsDrop(r.Netns)
	}
}

func (t *Table) netnsDrop(ns uint32) {
	if t.netns[ns] <= 1 {
		delete(t.netns, ns)
	} else {
		t.netns[ns]--
	}
}

// Namespaces calls fn for each network namespace holding live rows.
func (t *Table) Namespaces(fn func(netns uint32, rows int)) {
	for ns, n := range t.netns {
		fn(ns, n)
	}
}

// key identifies a socket: its cookie, or its kernel address where the
// kernel could not give a cookie, with the top bit set (as a kernel
// address has it anyway; cookies count up from 1, and never get there).
// One word, not two: the table is looked up for every transition.
type key uint64

func cookieKey(c uint64) key { return key(c) }
func addrKey(a uint64) key   { return key(a | 1<<63) }

// cookie is the socket cookie k is, or 0 if k is an address.
func (k key) cookie() uint64 {
	if k&(1<<63) != 0 {
		return 0
	}
	return uint64(k)
}

type listenKey struct {
	netns uint32
	port  uint16
}

// New returns an empty table that remembers DefaultClosedCap closed sockets.
func New() *Table { return NewCap(DefaultClosedCap) }

// NewCap returns an empty table that remembers up to closedCap closed
// sockets (0: none).
func NewCap(closedCap int) *Table {
	return &Table{rows: map[key]*Row{}, listeners: map[listenKey]*Row{}, closedCap: closedCap, netns: map[uint32]int{}}
}

// Len is the number of live sockets.
func (t *Table) Len() int { return len(t.rows) }

// SetMaxLive caps the live sockets remembered (0: no cap). Beyond it,
// new sockets are not remembered (their transitions still pass through)
// and Stats counts them as Untracked.
func (t *Table) SetMaxLive(n int) { t.maxLive = n }

// Stats tells how many sockets the table holds: live, closed (kept), and
// closed ones evicted to keep within the cap; and how many sockets were
// not remembered at all because the live table was full.
type Stats struct {
	Live, Closed, ClosedCap int
	Evicted                 uint64
	MaxLive                 int
	Untracked               uint64
	// KernelForgot: transitions of sockets born during the trace that
	// came without the kernel's memory of them (time in the old state):
	// its socket map (an LRU) was full and dropped them; the time is
	// filled in from the history here.
	KernelForgot uint64
}

// Stats returns the table's counts.
func (t *Table) Stats() Stats {
	return Stats{Live: len(t.rows), Closed: len(t.closed), ClosedCap: t.closedCap, Evicted: t.evicted,
		MaxLive: t.maxLive, Untracked: t.untracked, KernelForgot: t.kernelForgot}
}

// full reports whether a new live row would exceed the cap, and counts
// it if so.
func (t *Table) full() bool {
	if t.maxLive > 0 && len(t.rows) >= t.maxLive {
		t.untracked++
		return true
	}
	return false
}

// Live calls fn for each live socket, in no particular order.
func (t *Table) Live(fn func(*Row)) {
	for _, r := range t.rows {
		fn(r)
	}
}

// Closed calls fn for each remembered closed socket, oldest first.
func (t *Table) Closed(fn func(*Row)) {
	n := len(t.closed)
	for i := 0; i < n; i++ {
		fn(t.closed[(t.next+i)%n])
	}
}

// Lookup returns the live socket with this cookie, or nil.
func (t *Table) Lookup(cookie uint64) *Row { return t.rows[cookieKey(cookie)] }

func (t *Table) retire(r *Row) {
	if t.closedCap <= 0 {
		t.evicted++
		return
	}
	if len(t.closed) < t.closedCap {
		t.closed = append(t.closed, r)
		t.next = len(t.closed) % t.closedCap
		return
	}
	t.closed[t.next] = r
	t.next = (t.next + 1) % t.closedCap
	t.evicted++
}

// AddSnapshot adds the sockets of a snapshot taken between the monotonic
// times start and end, with their owners from /proc.
func (t *Table) AddSnapshot(socks []snapshot.Socket, owners procs.Table, start, end uint64) []*Row {
	if t.snapStart == 0 || start < t.snapStart {
		t.snapStart = start
	}
	if end > t.snapEnd {
		t.snapEnd = end
	}
	out := make([]*Row, 0, len(socks))
	for i := range socks {
		s := &socks[i]
		if t.rows[cookieKey(s.Cookie)] == nil && t.full() {
			continue
		}
		r := newSnapshotRow(s, owners)
		r.Seen = start
		t.put(cookieKey(s.Cookie), r)
		if r.State == tcpstate.Listen {
			t.listeners[listenKey{r.Netns, r.SPort}] = r
		}
		out = append(out, r)
	}
	return out
}

// noSocket is what Snap gives for a row the snapshot did not see.
var noSocket snapshot.Socket

// Snap returns the socket as the snapshot saw it; a zero Socket (not to
// be written to) for one it did not.
func (r *Row) Snap() *snapshot.Socket {
	if r.Diag != nil {
		return r.Diag
	}
	return &noSocket
}

// newSnapshotRow returns a new row of a socket found by a snapshot, with
// its own copy of s: one allocation for both.
func newSnapshotRow(s *snapshot.Socket, owners procs.Table) *Row {
	both := &struct {
		r Row
		s snapshot.Socket
	}{s: *s}
	FillRow(&both.r, &both.s, owners)
	return &both.r
}

// FillRow makes r the row of a socket found by a snapshot, with its
// owners from /proc. r.Diag is s: valid as long as s is.
func FillRow(r *Row, s *snapshot.Socket, owners procs.Table) {
	*r = Row{
		Cookie: s.Cookie, Netns: s.Netns, Family: s.Family,
		Src: s.Src, Dst: s.Dst, SPort: s.SPort, DPort: s.DPort,
		State: s.State, Preexisting: true, InSnapshot: true, Diag: s,
	}
	if us := owners[s.Inode]; s.Inode != 0 && len(us) > 0 {
		r.Users = us
		r.OwnerKnown, r.OwnerPID, r.OwnerComm = true, us[0].PID, us[0].Comm
	}
}

// born reports whether a transition is the first of a new socket.
func born(tr *record.Transition) bool {
	return (tr.Old == tcpstate.Close && (tr.New == tcpstate.SynSent || tr.New == tcpstate.Listen)) ||
		(tr.Old == tcpstate.Listen && tr.New == tcpstate.SynRecv)
}

func keyOf(tr *record.Transition) key {
	if tr.Cookie != 0 {
		return cookieKey(tr.Cookie)
	}
	return addrKey(tr.SkAddr)
}

// Apply merges a transition into its socket's row, creating the row if
// needed, and fills in the transition's owner from the row when BPF did
// not know it (a socket older than the trace, or accepted from a listener
// older than the trace). It returns the row, or nil when the socket is
// new and the live table is full (SetMaxLive): it is not remembered.
func (t *Table) Apply(tr *record.Transition) *Row {
	k := keyOf(tr)
	r := t.rows[k]
	if r == nil || born(tr) {
		if r == nil && t.maxLive > 0 && len(t.rows) >= t.maxLive {
			// Counted once a socket: at its birth (or, for one older
			// than the trace, when the snapshot or a reconciliation
			// could not add it).
			if born(tr) {
				t.untracked++
			}
			if tr.New == tcpstate.Close && t.closedSince != nil && tr.Ktime >= t.markK {
				t.closedSince[tr.Cookie] = true
			}
			return nil
		}
		// Room for a whole connection's history (5 transitions a side,
		// 6 with a listener's) in the row: one allocation a socket.
		r = &Row{Cookie: tr.Cookie, Netns: tr.Netns, Family: tr.Family, State: tr.Old,
			Preexisting: !born(tr)}
		r.History = r.steps[:0]
		if born(tr) {
			r.Born = tr.Ktime
			r.Active = tr.New == tcpstate.SynSent
		}
		t.put(k, r)
	}
	if n := len(r.History); n > 0 && r.Born != 0 && !born(tr) && !tr.InOldKnown && !tr.FromBackup && tr.Kind == events.KindTransition {
		// Born in the trace, seen before: the kernel knew it and forgot.
		t.kernelForgot++
		if prev := r.History[n-1].Ktime; tr.Ktime >= prev {
			tr.InOld, tr.InOldKnown = time.Duration(tr.Ktime-prev), true
		}
	}
	r.History = append(r.History, Step{Ktime: tr.Ktime, Old: tr.Old, New: tr.New})
	if tr.Ktime > r.Seen {
		r.Seen = tr.Ktime
	}

	if tr.Drops > 0 {
		r.Drops, r.DropReason, r.DropDir = tr.Drops, tr.DropReasonName, tr.DropDir
	}

	// Endpoints: the latest known (ports are 0 at some transitions).
	r.Src, r.Dst = tr.Src, tr.Dst
	if tr.SPort != 0 {
		r.SPort = tr.SPort
	}
	if tr.DPort != 0 {
		r.DPort = tr.DPort
	}

	// State: a snapshot row already reflects what happened before it was
	// taken; during it, it may or may not.
	switch {
	case !r.InSnapshot || tr.Ktime > t.snapEnd:
		r.State, r.Since = tr.New, tr.Ktime
	case tr.Ktime < t.snapStart:
		// already in the snapshot's state
	case r.State == tr.Old:
		r.State, r.Since = tr.New, tr.Ktime
	}

	// Owner.
	if tr.OwnerKnown {
		r.OwnerKnown, r.OwnerPID, r.OwnerTID, r.OwnerComm = true, tr.OwnerPID, tr.OwnerTID, tr.OwnerComm
		if tr.OwnerID != nil || r.OwnerID == nil || r.OwnerPID != tr.OwnerPID {
			r.OwnerID = tr.OwnerID
		}
		tr.OwnerID = r.OwnerID
	} else {
		if !r.OwnerKnown && tr.Old == tcpstate.Listen && tr.New == tcpstate.SynRecv {
			if l := t.listeners[listenKey{tr.Netns, tr.SPort}]; l != nil && l.OwnerKnown {
				r.OwnerKnown, r.OwnerPID, r.OwnerTID, r.OwnerComm = true, l.OwnerPID, l.OwnerTID, l.OwnerComm
				r.OwnerID = l.OwnerID
			}
		}
		if r.OwnerKnown {
			tr.OwnerKnown, tr.OwnerPID, tr.OwnerTID, tr.OwnerComm = true, r.OwnerPID, r.OwnerTID, r.OwnerComm
			tr.OwnerID = r.OwnerID
		}
	}

	lk := listenKey{r.Netns, r.SPort}
	if tr.New == tcpstate.Listen {
		t.listeners[lk] = r
	} else if tr.Old == tcpstate.Listen && tr.New == tcpstate.Close && t.listeners[lk] == r {
		delete(t.listeners, lk)
	}
	if tr.New == tcpstate.Close && r.Born != 0 && tr.Ktime >= r.Born {
		tr.Lifetime, tr.LifetimeKnown = time.Duration(tr.Ktime-r.Born), true
	}
	if tr.New == tcpstate.Close && r.State == tcpstate.Close {
		t.del(k)
		t.retire(r)
		if t.closedSince != nil && tr.Ktime >= t.markK {
			t.closedSince[r.Cookie] = true
		}
	}
	return r
}
