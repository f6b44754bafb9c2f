package pipeline

import (
	"fmt"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// The live table drifts from the truth whenever transitions are lost: a
// socket whose close was lost stays "live" forever. A reconciler checks
// the table against fresh sock_diag dumps of every namespace it holds
// sockets for: after each loss, every Options.ReconcileEvery, and when a
// namespace disappears. The dump runs in the background while records
// keep being read; its result is applied in the reading goroutine once
// every transition stamped before the dump ended has been applied.

// reconcileGap is the least time between the starts of two
// reconciliations: under a sustained overload, losses are reported every
// 200 ms, and the table needs one dump after the burst, not five a second.
// While losses go on, each reconciliation they trigger doubles the gap,
// up to maxReconcileGap, so that dumping does not add to the overload;
// one that sees no loss while it runs brings it back.
const (
	reconcileGap    = time.Second
	maxReconcileGap = 8 * time.Second
)

// catchUp: a dump's result is applied once the stream has passed its end
// by this much (or the ring is empty and this much time has passed).
const catchUp = 5 * time.Millisecond

type reconciler struct {
	o       *Options
	wanted  string // a reconciliation is wanted, for this reason ("": none)
	running bool   // a dump is under way or waiting to be applied
	trigger string // of the one running
	last    time.Time
	done    chan *dumpResult
	owners  chan ownersOf // owners of added rows, scanned in the background
	pending *dumpResult   // received, waiting for the stream to catch up
	// paths of the namespaces found by the last listing, by inode;
	// watched for namespaces that go away.
	paths   map[uint32]string
	own     uint32 // socktrace's own namespace
	lastErr string // of the last failed dump, said once
	// lossStreak: reconciliations in a row triggered by losses;
	// lossSince: a loss was reported since the last one started.
	lossStreak int
	lossSince  bool
	wake       func()
}

type dumpResult struct {
	dump  timeline.Dump
	paths map[uint32]string
	took  time.Duration
	err   error
}

func newReconciler(o *Options, wake func()) *reconciler {
	own, _ := snapshot.NetnsInode("/proc/thread-self/ns/net") // not the main thread's (see snapshot.Namespaces)
	rc := &reconciler{o: o, done: make(chan *dumpResult, 1), owners: make(chan ownersOf, 4), wake: wake, own: own, paths: map[uint32]string{}}
	if o.Netns != "" && o.Netns != "all" && o.Filter.Netns != own {
		rc.paths[o.Filter.Netns] = o.Netns // --netns PATH: watched from the start
	}
	return rc
}

// request asks for a reconciliation as soon as allowed.
func (rc *reconciler) request(why string) {
	if why == "lost" || why == "skipped" {
		rc.lossSince = true
	}
	if rc.wanted == "" {
		rc.wanted = why
	}
}

// gap is the least time from the last reconciliation's start to the next.
func (rc *reconciler) gap() time.Duration {
	g := reconcileGap
	for i := 1; i < rc.lossStreak && g < maxReconcileGap; i++ {
		g *= 2
	}
	return min(g, maxReconcileGap)
}

// poll runs in the reading goroutine after each record or wakeup:
// it starts a wanted dump, takes a finished one, and applies it once the
// stream has caught up. caughtUp tells whether every transition stamped
// before k has been read.
func (p *pipeline) pollReconcile(caughtUp func(k uint64) bool) error {
	rc := p.reconciler
	if rc == nil {
		return nil
	}
	if len(rc.owners) > 0 {
		p.takeOwners()
	}
	if rc.pending == nil {
		select {
		case r := <-rc.done:
			rc.pending = r
		default:
		}
	}
	if r := rc.pending; r != nil {
		if r.err == nil && !caughtUp(r.dump.End+uint64(catchUp)) {
			return nil
		}
		rc.pending, rc.running = nil, false
		if r.err != nil {
			// Not fatal: the trace goes on, the table as it was.
			p.mu.Lock()
			p.table.Unmark()
			p.mu.Unlock()
			if r.err.Error() != rc.lastErr {
				rc.lastErr = r.err.Error()
				fmt.Fprintf(os.Stderr, "socktrace: %v (the live sockets were not checked against the kernel)\n", r.err)
			}
			return nil
		}
		if err := p.applyReconcile(r); err != nil {
			return err
		}
	}
	if rc.wanted != "" && !rc.running && time.Since(rc.last) >= rc.gap() {
		p.startReconcile()
	}
	return nil
}

// startReconcile starts a dump in the background.
func (p *pipeline) startReconcile() {
	rc := p.reconciler
	rc.trigger, rc.wanted = rc.wanted, ""
	rc.running, rc.last = true, time.Now()
	if rc.trigger == "lost" || rc.trigger == "skipped" {
		rc.lossStreak++
	} else {
		rc.lossStreak = 0
	}
	rc.lossSince = false
	p.mu.Lock()
	p.table.Mark(events.Monotonic())
	rowsNetns := map[uint32]bool{}
	p.table.Namespaces(func(ns uint32, _ int) { rowsNetns[ns] = true })
	p.mu.Unlock()
	go func() {
		r := rc.dumpAll(rowsNetns)
		rc.done <- r
		rc.wake()
	}()
}

// dumpAll lists the namespaces to check and dumps them, with the owners
// of their sockets. It runs in its own goroutine and touches nothing of
// the pipeline but the reconciler's own options.
func (rc *reconciler) dumpAll(rowsNetns map[uint32]bool) *dumpResult {
	o := rc.o
	paths := map[uint32]string{}
	needList := o.Netns == "all"
	for ns := range rowsNetns {
		if ns != rc.own && (o.Filter.Netns == 0 || ns != o.Filter.Netns) {
			needList = true
		}
	}
	switch {
	case needList:
		list, err := snapshot.Namespaces()
		if err != nil {
			return &dumpResult{err: fmt.Errorf("reconcile: %w", err)}
		}
		for _, path := range list {
			if ino, err := snapshot.NetnsInode(path); err == nil {
				if _, ok := paths[ino]; !ok {
					paths[ino] = path
				}
			}
		}
	}
	if _, ok := paths[rc.own]; ok {
		paths[rc.own] = "" // socktrace's own: no need to enter it
	}
	// The namespaces in the scope of the snapshot, always.
	switch o.Netns {
	case "":
		paths[rc.own] = "" // socktrace's own: no need to enter it
	case "all":
	default:
		paths[o.Filter.Netns] = o.Netns
	}
	d := timeline.Dump{Netns: map[uint32]bool{}, Gone: map[uint32]bool{}}
	for ns := range rowsNetns {
		if _, ok := paths[ns]; !ok {
			d.Gone[ns] = true
		}
	}
	// Only the namespaces of the scope and those holding rows: a host
	// with a thousand idle containers is not dumped for nothing.
	var todo []string
	var inos []uint32
	for ino, path := range paths {
		if o.Netns == "all" || rowsNetns[ino] || ino == rc.own && o.Netns == "" || ino == o.Filter.Netns {
			todo = append(todo, path)
			inos = append(inos, ino)
		}
	}
	// Time-wait sockets are most of a busy host's and needed only for
	// the time-wait count: dumped only for the gauges.
	dumpStates := tcpstate.All
	if !o.Gauges {
		dumpStates &^= tcpstate.MaskOf(tcpstate.TimeWait)
		d.NoTimeWait = true
	}
	d.Start = events.Monotonic()
	began := time.Now()
	for i, path := range todo {
		socks, err := snapshot.Dump(snapshot.Options{States: dumpStates, IPv4: o.Filter.IPv4, IPv6: o.Filter.IPv6, Netns: path})
		if err != nil {
			// Gone meanwhile, or not enterable: no evidence either way,
			// unless it no longer exists at all.
			if _, serr := os.Stat(path); serr != nil && path != "" {
				if !stillExists(inos[i]) {
					d.Gone[inos[i]] = true
				}
			}
			continue
		}
		d.Netns[inos[i]] = true
		d.Sockets = append(d.Sockets, socks...)
	}
	d.End = events.Monotonic()
	took := time.Since(began)
	// Owners are looked for in /proc only when needed (see applyReconcile):
	// walking every process's descriptors costs more than the dump.
	if o.Gauges {
		d.Owners, _, _ = owners.Scan(dumpInodes(d.Sockets))
	}
	states := o.Filter.States
	if states == 0 {
		states = tcpstate.All
	}
	// Sockets to add are those the start-up snapshot takes (the filter's
	// states); time-wait and request sockets, only counted, must pass
	// the whole filter.
	keep := o.keepSocket(nil)
	d.Add = func(s *snapshot.Socket) bool {
		return states.Has(s.State) && (!timeline.IsMini(s) || keep(s))
	}
	return &dumpResult{dump: d, paths: paths, took: took}
}

// dumpInodes are the inodes of the dump's sockets: the gauges need the
// owners of its CLOSE-WAIT sockets and listeners, and of any row the
// reconciliation adds.
func dumpInodes(socks []snapshot.Socket) map[uint32]bool {
	want := map[uint32]bool{}
	for i := range socks {
		s := &socks[i]
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	return want
}

// addedInodes are the inodes of rows added without their owner.
func addedInodes(rows []*timeline.Row) map[uint32]bool {
	want := map[uint32]bool{}
	for _, r := range rows {
		if r.Snap().Inode != 0 && !r.OwnerKnown {
			want[r.Snap().Inode] = true
		}
	}
	return want
}

// ownersOf is the result of a background owner scan for added rows.
type ownersOf struct {
	owners procs.Table
	rows   []*timeline.Row
}

// takeOwners fills in the owners of added rows, if a scan finished.
func (p *pipeline) takeOwners() {
	select {
	case o := <-p.reconciler.owners:
		p.mu.Lock()
		for _, r := range o.rows {
			if us := o.owners[r.Snap().Inode]; len(us) > 0 && !r.OwnerKnown {
				r.Users = us
				r.OwnerKnown, r.OwnerPID, r.OwnerComm = true, us[0].PID, us[0].Comm
			}
		}
		p.identify(o.rows)
		p.mu.Unlock()
	default:
	}
}

// stillExists looks for a namespace by inode among all of them.
func stillExists(ino uint32) bool {
	list, err := snapshot.Namespaces()
	if err != nil {
		return true
	}
	for _, path := range list {
		if i, err := snapshot.NetnsInode(path); err == nil && i == ino {
			return true
		}
	}
	return false
}

// applyReconcile merges a finished dump into the table and the analysis,
// and says what changed.
func (p *pipeline) applyReconcile(r *dumpResult) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reconciler.lossSince {
		p.reconciler.lossStreak = 0 // the overload is over
	}
	res := p.table.Reconcile(&r.dump)
	now := time.Now()
	for _, row := range res.Closed {
		p.conns.Forget(row)
	}
	for _, row := range res.Added {
		subj := subjectOfRow(row)
		if p.o.Match(&subj) {
			p.conns.Pending(row, now)
		}
	}
	// Watch the namespaces that hold rows for going away.
	p.reconciler.paths = map[uint32]string{}
	p.table.Namespaces(func(ns uint32, _ int) {
		if path, ok := r.paths[ns]; ok && ns != p.reconciler.own {
			p.reconciler.paths[ns] = path
		}
	})
	p.minis = res.Minis
	p.reconciles++
	p.lastReconcile = now
	p.reconciledClosed += uint64(len(res.Closed))
	p.reconciledAdded += uint64(len(res.Added))
	p.reconciledChanged += uint64(res.Changed)

	// Added sockets need their owners from /proc: in the background, as
	// the dump was (a trace's dump looked for none).
	if !p.o.Gauges {
		if want := addedInodes(res.Added); len(want) > 0 {
			go func() {
				t, _, _ := owners.Scan(want)
				p.reconciler.owners <- ownersOf{t, res.Added}
				p.reconciler.wake()
			}()
		}
	} else {
		// The pressure picture comes with the dump.
		var press []snapshot.Socket
		for i := range r.dump.Sockets {
			if analysis.PressureStates.Has(r.dump.Sockets[i].State) {
				press = append(press, r.dump.Sockets[i])
			}
		}
		p.pressure = analysis.Measure(analysis.PressureInput{
			Sockets: press, Owners: r.dump.Owners, Table: p.table,
			Now: r.dump.End, Start: p.startK,
			CloseWaitAfter: p.o.CloseWaitAfter, Keep: p.o.keepSocket(r.dump.Owners),
			Identify: p.identifyPID,
		})
	}

	if len(res.Closed)+len(res.Added)+res.Changed == 0 || p.quiet {
		return nil
	}
	return p.w.Reconciled(&output.Reconciliation{
		Time: now, Trigger: p.reconciler.trigger,
		Closed: len(res.Closed), Added: len(res.Added), Changed: res.Changed, Live: p.table.Len(),
		ClosedTotal: p.reconciledClosed, AddedTotal: p.reconciledAdded, ChangedTotal: p.reconciledChanged,
		Duration: r.took,
	})
}

// watchNamespaces asks for a reconciliation when a namespace holding
// sockets of the table is no longer where the last listing found it (a
// namespace born since is found by the next periodic reconciliation, or
// the one after a loss: listing namespaces means walking /proc).
func (p *pipeline) watchNamespaces() {
	rc := p.reconciler
	if rc == nil || rc.running || rc.wanted != "" {
		return
	}
	for ino, path := range rc.paths {
		if ino == rc.own {
			continue
		}
		if got, err := snapshot.NetnsInode(path); err != nil || got != ino {
			rc.request("netns-gone")
			return
		}
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
