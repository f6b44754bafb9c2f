package timeline

import (
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// The table's side of reconciliation: applying a dump. When to dump, and
// what, is internal/reconcile's; the pipeline joins the two.
//
// A reconciliation checks the live table against a fresh sock_diag dump:
// sockets whose close was lost are closed, sockets whose birth was lost
// are added, states that moved unseen are corrected. Transitions keep
// arriving while the kernel is dumped, so the table decides only for the
// sockets the dump can speak for: a row that changed after the dump began
// is left for the next one, and a socket that closed after the dump began
// is not added back.
//
// Time-wait and request (syn-recv, not yet accepted) sockets are kernel
// objects of their own whose end no tracepoint reports: they are counted
// from each dump (Reconciled.Minis) rather than remembered as rows.

// Dump is a fresh sock_diag dump for Reconcile.
type Dump struct {
	Sockets []snapshot.Socket
	Owners  procs.Table // owners of Sockets by inode (may be partial)
	// Start and End: CLOCK_MONOTONIC times around the dump. The caller
	// calls Mark(Start) or earlier before the dump begins, and Reconcile
	// once every transition stamped before End has been applied.
	Start, End uint64
	// Netns: the namespaces dumped completely; their rows are checked.
	Netns map[uint32]bool
	// Gone: namespaces that no longer exist; all their rows are closed.
	Gone map[uint32]bool
	// Add says which sockets of the dump the table should hold when it
	// lacks them (the filter's states); nil adds all.
	Add func(*snapshot.Socket) bool
	// NoTimeWait: the dump left time-wait sockets out (they cost most
	// and only the time-wait count needs them): the table's time-wait
	// rows are not checked, and Minis counts none.
	NoTimeWait bool
}

// Reconciled is what a reconciliation changed.
type Reconciled struct {
	// Closed: live rows the kernel no longer had (their close was not
	// seen); they are retired with CloseNotSeen set.
	Closed []*Row
	// Added: sockets the kernel had and the table lacked.
	Added []*Row
	// Changed: rows whose state the kernel had moved unseen.
	Changed int
	// Minis: time-wait and request sockets of the dump, by state, that
	// are not rows of the table (they pass Add).
	Minis [tcpstate.Last + 1]int
}

// IsMini reports whether a dumped socket is a time-wait or request
// socket: no tracepoint reports its end.
func IsMini(s *snapshot.Socket) bool {
	return s.Inode == 0 && (s.State == tcpstate.TimeWait || s.State == tcpstate.SynRecv)
}

// isMiniRow: a row of the snapshot for a time-wait or request socket,
// unchanged since.
func isMiniRow(r *Row) bool {
	return r.InSnapshot && len(r.History) == 0 && IsMini(r.Snap())
}

// Mark starts remembering the sockets that close from CLOCK_MONOTONIC
// time k on, for the Reconcile of a dump that begins at or after k.
func (t *Table) Mark(k uint64) {
	t.closedSince = map[uint64]bool{}
	t.markK = k
}

// Unmark forgets a Mark whose dump failed.
func (t *Table) Unmark() { t.closedSince = nil }

// Reconcile applies a dump; see Dump for when to call it.
func (t *Table) Reconcile(d *Dump) Reconciled {
	var out Reconciled
	closedSince := t.closedSince
	t.closedSince = nil

	byCookie := make(map[uint64]*snapshot.Socket, len(d.Sockets))
	type tuple struct {
		netns    uint32
		sport    uint16
		dport    uint16
		src, dst [16]byte
	}
	tupleOf := func(netns uint32, r *Row) tuple {
		return tuple{netns, r.SPort, r.DPort, r.Src.As16(), r.Dst.As16()}
	}
	var byTuple map[tuple]*snapshot.Socket // for rows without a cookie
	for i := range d.Sockets {
		byCookie[d.Sockets[i].Cookie] = &d.Sockets[i]
	}
	matched := make(map[uint64]bool, len(t.rows))

	for k, r := range t.rows {
		if !d.Gone[r.Netns] && !d.Netns[r.Netns] {
			continue // not dumped: no evidence either way
		}
		var s *snapshot.Socket
		if !d.Gone[r.Netns] {
			if c := k.cookie(); c != 0 {
				s = byCookie[c]
			} else {
				if byTuple == nil {
					byTuple = map[tuple]*snapshot.Socket{}
					for i := range d.Sockets {
						x := &d.Sockets[i]
						byTuple[tuple{x.Netns, x.SPort, x.DPort, x.Src.As16(), x.Dst.As16()}] = x
					}
				}
				s = byTuple[tupleOf(r.Netns, r)]
			}
		}
		if d.NoTimeWait && r.State == tcpstate.TimeWait && s == nil && !d.Gone[r.Netns] {
			continue // not dumped: no evidence either way
		}
		if r.Seen >= d.Start {
			if s != nil {
				matched[s.Cookie] = true
			}
			continue // moved during or after the dump: next time
		}
		switch {
		case s == nil || (IsMini(s) && !isMiniRow(r) && !IsMini(r.Snap())):
			// Gone; or only its time-wait socket is left: the full
			// socket closed unseen.
			t.remove(k, r)
			if isMiniRow(r) {
				continue // a time-wait or request socket ran its course
			}
			r.CloseNotSeen = true
			t.retire(r)
			out.Closed = append(out.Closed, r)
		default:
			matched[s.Cookie] = true
			r.Seen = d.Start
			if s.State != r.State {
				r.State, r.Since = s.State, 0
				out.Changed++
			}
		}
	}

	for i := range d.Sockets {
		s := &d.Sockets[i]
		if matched[s.Cookie] || closedSince[s.Cookie] || (d.Add != nil && !d.Add(s)) {
			continue
		}
		if !d.Netns[s.Netns] {
			continue
		}
		if IsMini(s) {
			out.Minis[s.State]++
			continue
		}
		// A full table: the socket was counted untracked at its birth
		// (or its birth was lost, and counted so); not again each pass.
		if t.rows[cookieKey(s.Cookie)] != nil || (t.maxLive > 0 && len(t.rows) >= t.maxLive) {
			continue
		}
		r := newSnapshotRow(s, d.Owners)
		r.Seen = d.Start
		t.put(cookieKey(s.Cookie), r)
		if r.State == tcpstate.Listen {
			t.listeners[listenKey{r.Netns, r.SPort}] = r
		}
		out.Added = append(out.Added, r)
	}
	return out
}

// remove drops a live row without retiring it.
func (t *Table) remove(k key, r *Row) {
	t.del(k)
	if lk := (listenKey{r.Netns, r.SPort}); t.listeners[lk] == r {
		delete(t.listeners, lk)
	}
}
