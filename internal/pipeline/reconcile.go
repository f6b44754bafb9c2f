package pipeline

import (
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/gcroom"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/reconcile"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/timeline"
)

// The pipeline's side of reconciliation: internal/reconcile says when
// and dumps, the table applies a dump (timeline.Table.Reconcile); here
// the two are joined in the reading goroutine, and what changed is
// counted and written.

// releaseAbove: after a reconciliation, free heap beyond this much is
// given back to the kernel (gcroom.Release): twice the room the
// collector is given, so that a steady churn does not trigger it.
const releaseAbove = 2 * gcRoom

// newReconciler is the reconciler of a live run.
func newReconciler(o *Options, wake func()) *reconcile.Reconciler {
	return reconcile.New(reconcile.Config{
		Netns: o.Netns, NetnsInode: o.Filter.Netns,
		IPv4: o.Filter.IPv4, IPv6: o.Filter.IPv6,
		States: o.Filter.States, Gauges: o.Gauges,
		Keep: o.keepSocket(nil),
	}, wake)
}

// pollReconcile runs in the reading goroutine after each batch of
// records or wakeup: it takes the owners of added rows, applies a
// finished dump once the stream has caught up with it, and starts a
// wanted one. caughtUp tells whether every transition stamped before k
// has been read.
func (p *pipeline) pollReconcile(caughtUp func(k uint64) bool) error {
	rc := p.reconciler
	if rc == nil {
		return nil
	}
	p.takeOwners()
	if r := rc.Ready(caughtUp); r != nil {
		if r.Err != nil {
			p.dumpFailed()
			return nil
		}
		if err := p.applyReconcile(r); err != nil {
			return err
		}
		// What the burst before (and the dump) grew goes back now, not
		// at the runtime's pace of minutes.
		gcroom.Release(releaseAbove)
	}
	if rc.Due() {
		p.startReconcile()
	}
	return nil
}

// startReconcile marks the table and starts a dump in the background.
func (p *pipeline) startReconcile() {
	p.mu.Lock()
	p.table.Mark(events.Monotonic())
	rowsNetns := p.namespacesHeld()
	p.mu.Unlock()
	p.reconciler.Start(rowsNetns)
}

// dumpFailed forgets the mark of a dump that failed: the trace goes on,
// the table as it was.
func (p *pipeline) dumpFailed() {
	p.mu.Lock()
	p.table.Unmark()
	p.mu.Unlock()
}

// namespacesHeld are the namespaces the table holds rows of; p.mu held.
func (p *pipeline) namespacesHeld() map[uint32]bool {
	held := map[uint32]bool{}
	p.table.Namespaces(func(ns uint32, _ int) { held[ns] = true })
	return held
}

// takeOwners fills in the owners of added rows, if a scan finished.
func (p *pipeline) takeOwners() {
	o, ok := p.reconciler.TakeOwners()
	if !ok {
		return
	}
	p.mu.Lock()
	for _, r := range o.Rows {
		if us := o.Owners[r.Snap().Inode]; len(us) > 0 && !r.OwnerKnown {
			r.Users = us
			r.OwnerKnown, r.OwnerPID, r.OwnerComm = true, us[0].PID, us[0].Comm
		}
	}
	p.identify(o.Rows)
	p.mu.Unlock()
}

// applyReconcile merges a finished dump into the table and the analysis,
// and says what changed.
func (p *pipeline) applyReconcile(r *reconcile.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := p.table.Reconcile(&r.Dump)
	now := time.Now()
	p.reconciler.Applied(r, p.namespacesHeld())
	p.followReconciled(&res, now)
	p.countReconciled(&res, now)
	p.measureReconciled(r, &res)
	if p.o.Gauges {
		if err := p.closeWaitAlerts(&p.pressure, now); err != nil {
			return err
		}
	}
	if len(res.Closed)+len(res.Added)+res.Changed == 0 || p.quiet {
		return nil
	}
	return p.w.Reconciled(&output.Reconciliation{
		Time: now, Trigger: r.Trigger,
		Closed: len(res.Closed), Added: len(res.Added), Changed: res.Changed, Live: p.table.Len(),
		ClosedTotal: p.reconciledClosed, AddedTotal: p.reconciledAdded, ChangedTotal: p.reconciledChanged,
		Duration: r.Took,
	})
}

// followReconciled tells the connection analysis of the rows closed and
// added.
func (p *pipeline) followReconciled(res *timeline.Reconciled, now time.Time) {
	for _, row := range res.Closed {
		p.conns.Forget(row)
	}
	for _, row := range res.Added {
		subj := subjectOfRow(row)
		if p.o.Match(&subj) {
			p.conns.Pending(row, now)
		}
	}
}

// countReconciled keeps the counts since start, for metrics and the
// reconciled record.
func (p *pipeline) countReconciled(res *timeline.Reconciled, now time.Time) {
	p.minis = res.Minis
	p.reconciles++
	p.lastReconcile = now
	p.reconciledClosed += uint64(len(res.Closed))
	p.reconciledAdded += uint64(len(res.Added))
	p.reconciledChanged += uint64(res.Changed)
}

// measureReconciled: with the gauges, the pressure picture comes with
// the dump; without, added sockets need their owners from /proc, looked
// for in the background as the dump was.
func (p *pipeline) measureReconciled(r *reconcile.Result, res *timeline.Reconciled) {
	if !p.o.Gauges {
		p.reconciler.ScanOwners(res.Added)
		return
	}
	// Counted first: grown by append, the copy of a busy namespace's
	// time-wait sockets made twice its size of garbage each time.
	n := 0
	for i := range r.Dump.Sockets {
		if analysis.PressureStates.Has(r.Dump.Sockets[i].State) {
			n++
		}
	}
	press := make([]snapshot.Socket, 0, n)
	for i := range r.Dump.Sockets {
		if analysis.PressureStates.Has(r.Dump.Sockets[i].State) {
			press = append(press, r.Dump.Sockets[i])
		}
	}
	p.pressure = analysis.Measure(analysis.PressureInput{
		Sockets: press, Owners: r.Dump.Owners, Table: p.table,
		Now: r.Dump.End, Start: p.startK,
		CloseWaitAfter: p.o.CloseWaitAfter, Keep: p.o.keepSocket(r.Dump.Owners),
		Identify: p.identifyPID,
	})
}

// watchNamespaces asks for a reconciliation when a namespace holding
// sockets of the table went away (see reconcile.WatchNamespaces).
func (p *pipeline) watchNamespaces() {
	if p.reconciler != nil {
		p.reconciler.WatchNamespaces()
	}
}

// subjectOfRow is what the filter sees of a row.
func subjectOfRow(r *timeline.Row) filter.Subject {
	return filter.Subject{
		State: r.State, Family: r.Family, Src: r.Src, Dst: r.Dst,
		SPort: r.SPort, DPort: r.DPort,
		OwnerKnown: r.OwnerKnown, PID: r.OwnerPID, Comm: r.OwnerComm,
		Owner: r.OwnerID, Netns: r.Netns,
		IfIndex: r.Snap().IfIndex, Mark: r.Snap().Mark, SockCgroup: r.Snap().CgroupID,
	}
}
