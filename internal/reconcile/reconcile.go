// Package reconcile decides when the live socket table is checked
// against the kernel, and dumps what it is checked against.
//
// The live table drifts from the truth whenever transitions are lost: a
// socket whose close was lost stays "live" forever. A Reconciler asks for
// fresh sock_diag dumps of every namespace the table holds sockets for:
// after each loss, every --reconcile-every, and when a namespace
// disappears. The dump runs in the background while records keep being
// read; its Result is handed back once every transition stamped before
// the dump ended has been read.
//
// Reconciliation is split in two, one side per package:
//   - this package: when to dump, and what (the namespaces, their
//     sockets, their owners);
//   - internal/timeline: applying a dump to the table
//     (Table.Mark, Table.Reconcile), which only the table can do.
//
// The pipeline joins them (internal/pipeline/reconcile.go): it marks the
// table before a dump, applies the Result, and reports what changed.
package reconcile

import (
	"fmt"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

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

// catchUp: a dump's result is handed back once the stream has passed its
// end by this much (or the ring is empty and this much time has passed).
const catchUp = 5 * time.Millisecond

// Config is what a Reconciler needs of the run's options.
type Config struct {
	// Netns: --netns as given ("": socktrace's own, "all", or a path);
	// NetnsInode: the inode of that path.
	Netns      string
	NetnsInode uint32
	IPv4, IPv6 bool
	// States: the filter's states (0: all), the sockets a dump adds.
	States tcpstate.Mask
	// Gauges: dumps count time-wait sockets and look for owners.
	Gauges bool
	// Keep: the whole filter, which time-wait and request sockets must
	// pass to be counted.
	Keep func(*snapshot.Socket) bool
}

// Reconciler schedules reconciliations and runs their dumps. Its methods
// are called from the goroutine that reads records; the dumps and owner
// scans run in their own, and call wake when done.
type Reconciler struct {
	cfg     Config
	wanted  string // a reconciliation is wanted, for this reason ("": none)
	running bool   // a dump is under way or waiting to be applied
	trigger string // of the one running
	last    time.Time
	done    chan *Result
	owners  chan AddedOwners // owners of added rows, scanned in the background
	pending *Result          // received, waiting for the stream to catch up
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

// Result is a finished dump.
type Result struct {
	Dump    timeline.Dump
	Trigger string        // why it was asked for
	Took    time.Duration // the dump's own time, owners not included
	Err     error         // the dump failed: nothing to apply
	paths   map[uint32]string
}

// New is a Reconciler for a run with cfg; wake wakes the reading
// goroutine when a background dump or scan is done.
func New(cfg Config, wake func()) *Reconciler {
	own, _ := snapshot.NetnsInode("/proc/thread-self/ns/net") // not the main thread's (see snapshot.Namespaces)
	rc := &Reconciler{cfg: cfg, done: make(chan *Result, 1), owners: make(chan AddedOwners, 4), wake: wake, own: own, paths: map[uint32]string{}}
	if cfg.Netns != "" && cfg.Netns != "all" && cfg.NetnsInode != own {
		rc.paths[cfg.NetnsInode] = cfg.Netns // --netns PATH: watched from the start
	}
	return rc
}

// Request asks for a reconciliation as soon as allowed.
func (rc *Reconciler) Request(why string) {
	if why == "lost" || why == "skipped" {
		rc.lossSince = true
	}
	if rc.wanted == "" {
		rc.wanted = why
	}
}

// gap is the least time from the last reconciliation's start to the next.
func (rc *Reconciler) gap() time.Duration {
	g := reconcileGap
	for i := 1; i < rc.lossStreak && g < maxReconcileGap; i++ {
		g *= 2
	}
	return min(g, maxReconcileGap)
}

// Due says whether a wanted reconciliation may start now.
func (rc *Reconciler) Due() bool {
	return rc.wanted != "" && !rc.running && time.Since(rc.last) >= rc.gap()
}

// Start dumps the namespaces in the background: the namespaces of the
// scope, and rowsNetns, those the table holds rows of. The caller has
// marked the table (timeline.Table.Mark) before.
func (rc *Reconciler) Start(rowsNetns map[uint32]bool) {
	trigger := rc.begin()
	go func() {
		r := rc.dumpAll(rowsNetns)
		r.Trigger = trigger
		rc.done <- r
		rc.wake()
	}()
}

// begin moves the wanted reconciliation to the running one, and counts
// the streak of those triggered by losses.
func (rc *Reconciler) begin() string {
	rc.trigger, rc.wanted = rc.wanted, ""
	rc.running, rc.last = true, time.Now()
	if rc.trigger == "lost" || rc.trigger == "skipped" {
		rc.lossStreak++
	} else {
		rc.lossStreak = 0
	}
	rc.lossSince = false
	return rc.trigger
}

// Ready hands back a finished dump once the stream has caught up with
// it (caughtUp(k): every transition stamped before k has been read), or
// at once if it failed; nil while there is none. A failure is said on
// stderr, once for each new error: it is not fatal, the trace goes on.
func (rc *Reconciler) Ready(caughtUp func(k uint64) bool) *Result {
	if rc.pending == nil {
		select {
		case r := <-rc.done:
			rc.pending = r
		default:
			return nil
		}
	}
	r := rc.pending
	if r.Err == nil && !caughtUp(r.Dump.End+uint64(catchUp)) {
		return nil
	}
	rc.pending, rc.running = nil, false
	if r.Err != nil && r.Err.Error() != rc.lastErr {
		rc.lastErr = r.Err.Error()
		fmt.Fprintf(os.Stderr, "socktrace: %v (the live sockets were not checked against the kernel)\n", r.Err)
	}
	return r
}

// Applied notes that r was applied to the table, which now holds rows of
// the namespaces held: those are watched for going away.
func (rc *Reconciler) Applied(r *Result, held map[uint32]bool) {
	if !rc.lossSince {
		rc.lossStreak = 0 // the overload is over
	}
	rc.paths = map[uint32]string{}
	for ns := range held {
		if path, ok := r.paths[ns]; ok && ns != rc.own {
			rc.paths[ns] = path
		}
	}
}

// WatchNamespaces asks for a reconciliation when a namespace holding
// sockets of the table is no longer where the last listing found it (a
// namespace born since is found by the next periodic reconciliation, or
// the one after a loss: listing namespaces means walking /proc).
func (rc *Reconciler) WatchNamespaces() {
	if rc.running || rc.wanted != "" {
		return
	}
	for ino, path := range rc.paths {
		if ino == rc.own {
			continue
		}
		if got, err := snapshot.NetnsInode(path); err != nil || got != ino {
			rc.Request("netns-gone")
			return
		}
	}
}

// AddedOwners are the owners found for rows a reconciliation added.
type AddedOwners struct {
	Owners procs.Table
	Rows   []*timeline.Row
}

// ScanOwners looks in /proc, in the background, for the owners of added
// rows that lack one (a trace's dump looked for none); TakeOwners hands
// them back.
func (rc *Reconciler) ScanOwners(added []*timeline.Row) {
	want := addedInodes(added)
	if len(want) == 0 {
		return
	}
	go func() {
		t, _, _ := owners.Scan(want)
		rc.owners <- AddedOwners{t, added}
		rc.wake()
	}()
}

// TakeOwners hands back a finished owner scan, if any.
func (rc *Reconciler) TakeOwners() (AddedOwners, bool) {
	if len(rc.owners) == 0 {
		return AddedOwners{}, false
	}
	select {
	case o := <-rc.owners:
		return o, true
	default:
		return AddedOwners{}, false
	}
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
