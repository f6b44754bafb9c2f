package pipeline

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/nat"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/reconcile"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/safetext"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// snap is a socket snapshot, as taken or as read back from a capture.
type snap struct {
	socks      []snapshot.Socket
	owners     procs.Table
	ids        map[uint64]*identity.Identity // by cookie: owners' identities read back from a capture
	actual     map[uint64]netip.AddrPort     // by cookie: NAT backends read back from a capture
	start, end uint64                        // CLOCK_MONOTONIC, around the dump
	at         time.Time
}

// pipeline is what happens to the snapshot and to each record, whether
// they come live from the kernel or from a capture file: the same
// merging, analysis, filtering and output, so a replay shows what the
// live run showed.
type pipeline struct {
	ring     func() (size, peak int) // the tracer's ring use; nil in replays
	o        *Options
	stdout   *bufio.Writer
	w        writer
	quiet    bool            // -q: no live output
	recorder *capture.Writer // -w: recording; nil if not
	table    *timeline.Table
	conns    *analysis.Connects
	started  time.Time // when the trace began
	startK   uint64    // the same, CLOCK_MONOTONIC

	shown, lost uint64
	skipped     uint64    // state changes the kernel did not run the program for
	transitions uint64    // all transitions received
	lostOther   uint64    // retransmit, reset, error records lost
	lastWall    time.Time // of the latest record
	lastK       uint64

	// mu guards everything above and below against State, which other
	// goroutines (a metrics scrape) call while records are processed.
	mu sync.Mutex
	// reconciler: the live table checked against the kernel (nil in a
	// replay: a capture holds no dumps).
	reconciler *reconcile.Reconciler
	// reconciled counts since start.
	reconciledClosed, reconciledAdded, reconciledChanged uint64
	reconciles                                           uint64
	lastReconcile                                        time.Time
	// minis: time-wait and request sockets seen by the last dump.
	minis [tcpstate.Last + 1]int
	// pressure: the picture of the last dump (for metrics).
	pressure analysis.Pressure
	// hooks: for outputs that are not streams (metrics); never nil.
	hooks *Hooks
	// beat: UnixNano of the reading loop's latest round.
	beat atomic.Int64
	// ids: who owns sockets beyond their process (nil in a replay: the
	// capture says).
	ids      *identity.Resolver
	recentID identity.Recent // in front of ids for transitions
	// netnsName names network namespaces for the output (nil: none);
	// recorded with -w so that a replay names them alike.
	netnsName func(uint32) string
	// dns: names on addresses from DNS answers; nil with --no-dns.
	dns *dnsNames
	// nat: the NAT backends of connections, from conntrack (nil in a
	// replay: the capture says).
	nat *nat.Resolver
	// subj: the filter's subject of the record at hand.
	subj filter.Subject
	// recState: the recording's state as of its last pause or
	// resumption (-w; for metrics and /healthz); gaps: the gap records
	// a replay read.
	recState RecordingState
	gaps     uint64
	// dropNames names the kernel's drop reasons (nil in a replay: the
	// capture holds the names).
	dropNames *drops.Namer
	// held: drops of no socket, by the 4-tuple of the connect attempt
	// they belong to (drops.go).
	held map[tupleKey]*heldDrops
	// current: the tracer's record at hand, with what user space
	// attached to it.
	current record.Transition
	// listen: the listeners' drop counts (listen.go); listenPoller polls
	// them in a live run (nil in a replay: the capture has the polls),
	// until listenStop.
	listen       *listeners.Tracker
	listenPoller *listenPoller
	listenStop   func()
	// flight: the flight recorder (flight.go; nil without
	// --flight-recorder), the alerts' JSON for it, and the processes
	// leaking CLOSE-WAIT sockets as of the last pressure picture.
	flight    *flight.Recorder
	alertBuf  *bufFlusher
	alertJSON *output.JSON
	cwLeaks   map[cwKey]bool
}

// Hooks let a caller follow what the pipeline learns, record by record,
// in the goroutine that reads them; e.g. metrics.
type Hooks struct {
	// Connected: a connect attempt completed its handshake in this long.
	Connected func(t *record.Transition, handshake time.Duration)
	// Ended: a connect attempt ended (syn-sent -> established, or ->
	// close), with its NAT backend if any.
	Ended func(t *record.Transition)
	// Attached: the program is attached and the snapshot merged; from
	// now on records are read. p gives the pipeline's state on demand.
	Attached func(p *View, tr *events.Tracer)
	// DNS: a DNS answer was seen (live, or read back from a capture).
	DNS func(o *dnscache.Observation)
	// Warn: something is amiss with the capture files read (ReadTo),
	// as said on stderr too.
	Warn func(msg string)
	// RecordedAlert: an alert record read back from a capture (flight
	// recordings hold the alerts the live run raised); a replay raises
	// its own alerts besides.
	RecordedAlert func(a *capture.Alert)
}

func newPipeline(o *Options, started time.Time, startK uint64) *pipeline {
	var out io.Writer = os.Stdout
	if o.Tee != nil {
		out = io.MultiWriter(o.Tee, os.Stdout)
	}
	stdout := bufio.NewWriterSize(out, 64<<10)
	table := timeline.NewCap(o.History)
	maxLive := o.MaxSockets
	if maxLive == 0 {
		maxLive = DefaultMaxSockets
	}
	table.SetMaxLive(maxLive)
	return &pipeline{
		o: o, stdout: stdout, w: newWriter(o, stdout),
		table: table, conns: analysis.NewConnects(o.Analysis),
		started: started, startK: startK, lastWall: started, lastK: startK,
		hooks: &Hooks{}, listen: listeners.NewTracker(), listenStop: func() {},
	}
}

// Writer writes transitions, socket rows, alerts and summaries: the
// table or JSON on stdout, or another consumer of a replay (ReadTo).
type Writer interface {
	output.Writer
	Socket(r *timeline.Row, at time.Time) error
	Alert(*analysis.Alert) error
	Summary(*analysis.Summary) error
	Reconciled(*output.Reconciliation) error
	Packet(*record.Packet) error
	LostOther(n, total uint64, at time.Time) error
	Recording(*output.Recording) error
	Flight(*output.Flight) error
	SetNetnsNames(func(uint32) string)
}

type writer = Writer

func newWriter(o *Options, stdout *bufio.Writer) writer {
	if o.Output == "json" {
		return output.NewJSON(stdout)
	}
	return output.NewTable(stdout, os.Stderr, o.Table)
}

// mergeSnapshot merges a snapshot into the history, records it, and shows the
// sockets that pass the filter.
func (p *pipeline) mergeSnapshot(s *snap) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rows := p.table.AddSnapshot(s.socks, s.owners, s.start, s.end)
	p.identify(rows)
	actual := map[uint64]netip.AddrPort{}
	accepted := acceptedBy(rows)
	for _, r := range rows {
		if s.actual != nil {
			r.Actual = s.actual[r.Cookie]
		}
		if !accepted(r) {
			natRow(p.nat, r)
		}
		if r.Actual.IsValid() {
			actual[r.Cookie] = r.Actual
		}
	}
	byCookie := map[uint64]*identity.Identity{}
	for _, r := range rows {
		if r.OwnerID == nil && s.ids != nil {
			r.OwnerID = s.ids[r.Cookie]
		}
		if r.OwnerID != nil {
			byCookie[r.Cookie] = r.OwnerID
		}
	}
	if p.recorder != nil {
		for i := range s.socks {
			if err := p.recordNetns(s.socks[i].Netns); err != nil {
				return err
			}
		}
		if err := p.recorder.SnapshotStart(s.at, s.start, s.end); err != nil {
			return err
		}
		for i := range s.socks {
			var users []procs.Owner
			if s.socks[i].Inode != 0 {
				users = s.owners[s.socks[i].Inode]
			}
			if err := p.recorder.Socket(&s.socks[i], users, byCookie[s.socks[i].Cookie], actual[s.socks[i].Cookie]); err != nil {
				return err
			}
		}
		if err := p.recorder.SnapshotEnd(len(s.socks)); err != nil {
			return err
		}
	}
	var kept []*timeline.Row
	for _, r := range rows {
		subj := subjectOfRow(r)
		if p.o.Match(&subj) {
			kept = append(kept, r)
			p.conns.Pending(r, s.at)
		}
	}
	if p.quiet || p.o.AlertsOnly {
		return nil
	}
	for _, r := range kept {
		if err := p.w.Socket(r, s.at); err != nil {
			return err
		}
	}
	if len(kept) > 0 && p.o.Output == "table" {
		p.stdout.WriteString("\n")
	}
	return nil
}

// event handles one record from the tracer, by its type: a state
// transition, a packet event, or a count of records lost (wake-ups are
// the source's: liveSource.woken).
func (p *pipeline) event(r *events.Record) error {
	switch r.Type {
	case events.LossRecord:
		return p.loss(&r.Loss)
	case events.PacketRecord:
		return p.packet((*record.Packet)(p.hold(&r.Transition)))
	}
	return p.transition(p.hold(&r.Transition))
}

// hold copies the kernel's record t into the pipeline's own, to which
// user space attaches what it knows (enrich.go); a packet event comes
// in the same record, its type told by the tracer. It is reused, record
// after record: attaching allocates nothing. Only the reading goroutine
// touches it.
func (p *pipeline) hold(t *events.Transition) *record.Transition {
	p.current = record.Transition{Transition: *t}
	return &p.current
}

// loss counts, records and shows the records the kernel could not
// send, live or replayed: packet events, or transitions lost or skipped
// (the live table then misses them: a reconciliation is asked for).
func (p *pipeline) loss(r *events.Loss) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.LostOther > 0 {
		return p.lostPackets(r.LostOther, r.At)
	}
	if p.reconciler != nil {
		if r.Lost > 0 {
			p.reconciler.Request("lost")
		} else {
			p.reconciler.Request("skipped")
		}
	}
	p.lastWall = r.At
	if r.Lost > 0 {
		if err := p.lostTransitions(r.Lost, r.At); err != nil {
			return err
		}
	}
	if r.Skipped > 0 {
		return p.skippedTransitions(r.Skipped, r.At)
	}
	return nil
}

// lostPackets counts and shows n packet events lost (not recorded: a
// replay has none of them).
func (p *pipeline) lostPackets(n uint64, at time.Time) error {
	p.lostOther += n
	if p.quiet {
		return nil
	}
	return p.w.LostOther(n, p.lostOther, at)
}

// lostTransitions counts, records and shows n transitions lost, the
// ring buffer full.
func (p *pipeline) lostTransitions(n uint64, at time.Time) error {
	p.lost += n
	if p.flight != nil {
		p.flight.Lost(n, p.lost, at)
	}
	if p.recorder != nil {
		if err := p.recorder.Lost(n, p.lost, at); err != nil {
			return err
		}
	}
	if p.quiet {
		return nil
	}
	return p.w.Lost(n, p.lost, at)
}

// skippedTransitions counts, records and shows n state changes the
// kernel did not run the program for.
func (p *pipeline) skippedTransitions(n uint64, at time.Time) error {
	p.skipped += n
	if p.flight != nil {
		p.flight.Skipped(n, p.skipped, at)
	}
	if p.recorder != nil {
		if err := p.recorder.Skipped(n, p.skipped, at); err != nil {
			return err
		}
	}
	if p.quiet {
		return nil
	}
	return p.w.Skipped(n, p.skipped, at)
}

// transition handles one state transition, live or replayed (with the
// owner's identity it was recorded with): merged into the history,
// analysed, filtered and shown.
func (p *pipeline) transition(t *record.Transition) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastWall, p.lastK = t.Time, t.Ktime
	p.transitions++
	p.identifyOwner(t)
	p.findBackend(t)
	p.nameDrop(t)
	p.takeHeldDrops(t)
	// Record the transition as the kernel gave it: a replay merges it
	// into the same history and comes to the same owner.
	if p.recorder != nil || p.flight != nil {
		if err := p.recordNetns(t.Netns); err != nil {
			return err
		}
	}
	if p.flight != nil {
		p.flight.Transition(t)
	}
	if p.recorder != nil {
		if err := p.recorder.Transition(t); err != nil {
			return err
		}
	}
	row := p.table.Apply(t)
	p.nameDest(t, row)
	keepBackend(t, row)
	// The subject lives in the pipeline: a local one escapes to the heap
	// through the expression's interface, an allocation a transition.
	p.subj = filter.OfTransition(t)
	subj := &p.subj
	show := p.o.Match(subj)
	// The history follows sockets into and out of the states asked for:
	// leaving syn-sent is how a connect attempt ends.
	subj.State = t.Old
	var err error
	if row == nil {
		// Not remembered: the live table is full (counted in its stats).
	} else if show || p.o.Match(subj) {
		a := p.conns.Observe(t, row)
		p.overflowingListener(a)
		// A stale name explains a failure: it comes first.
		if s := p.staleAlert(t); s != nil {
			if err = p.flightAlert(s); err == nil && !p.quiet {
				err = p.w.Alert(s)
			}
		}
		p.staleCleared(t)
		if a != nil && err == nil {
			if err = p.flightAlert(a); err == nil && !p.quiet {
				err = p.w.Alert(a)
			}
		}
		if t.Old == tcpstate.SynSent && t.New != tcpstate.Close && t.InOldKnown && p.hooks.Connected != nil {
			p.hooks.Connected(t, t.InOld)
		}
		if t.Old == tcpstate.SynSent && p.hooks.Ended != nil {
			p.hooks.Ended(t)
		}
	} else if t.New == tcpstate.Close {
		p.conns.Forget(row)
	}
	if show && err == nil {
		p.shown++
		if !p.quiet && !p.o.AlertsOnly {
			err = p.w.Transition(t)
		}
	}
	return err
}

// packet handles a packet event, a retransmit, reset or error record
// (--events), live or replayed: recorded, given the socket's owner from
// the table, filtered by its state, shown.
func (p *pipeline) packet(t *record.Packet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nameDrop((*record.Transition)(t))
	if t.IsTupleDrop() {
		// Of no socket, maybe not of a socket traced (the kernel sends
		// them from every namespace): held for the attempt of its
		// 4-tuple, recorded and shown with it, never alone.
		p.holdDrop(t)
		return nil
	}
	if p.flight != nil {
		p.flight.Packet(t)
	}
	if p.recorder != nil {
		if err := p.recorder.Packet(t); err != nil {
			return err
		}
	}
	p.fromSocket(t)
	p.subj = filter.OfPacket(t)
	if !p.o.Match(&p.subj) || p.quiet || p.o.AlertsOnly {
		return nil
	}
	return p.w.Packet(t)
}

// identify gives the rows whose owner /proc named their identity, from
// the owner's /proc/PID/cgroup (once per process).
func (p *pipeline) identify(rows []*timeline.Row) {
	if p.ids == nil {
		return
	}
	pids := p.ids.PIDs()
	for _, r := range rows {
		if r.OwnerKnown && r.OwnerID == nil {
			r.OwnerID = pids.Of(r.OwnerPID)
		}
	}
}

// recordNetns writes the name of namespace ino to the recording (once a
// file, and again if it changes).
func (p *pipeline) recordNetns(ino uint32) error {
	if p.netnsName == nil {
		return nil
	}
	name := p.netnsName(ino)
	if p.flight != nil {
		p.flight.NetnsName(ino, name)
	}
	if p.recorder == nil {
		return nil
	}
	return p.recorder.NetnsName(ino, name)
}

// identifyPID is the identity of process pid, nil if unknown.
func (p *pipeline) identifyPID(pid uint32) *identity.Identity {
	if p.ids == nil {
		return nil
	}
	return p.ids.ByPID(pid)
}

// flush hands the output (and the recording) to the kernel.
func (p *pipeline) flush() error {
	if p.recorder != nil {
		if err := p.recorder.Flush(); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// summary writes the summary, with the pressure picture given.
func (p *pipeline) summary(now time.Time, pressure analysis.Pressure) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Summary(&analysis.Summary{
		Time: now, Since: p.started,
		Dests: p.conns.Dests(), DestsEvicted: p.conns.Evicted(),
		Pressure: p.listenerDrops(pressure), History: p.table.Stats(), Lost: p.lost, Skipped: p.skipped,
		DNS: p.dnsSummary(), Ring: p.ringUse(), Recording: p.recordingSummary(),
		Flight: p.flightSummary(),
	})
}

// recordingSummary is the recording's figures, nil without one.
func (p *pipeline) recordingSummary() *analysis.RecordingSummary {
	if p.recorder == nil {
		return nil
	}
	st := p.recorder.State()
	r := &analysis.RecordingSummary{File: st.File, Paused: st.Paused, Since: st.Since, Transitions: st.Transitions,
		Bytes: st.Bytes, Files: st.Files, Errors: st.Errors, Dropped: st.Dropped}
	if st.Err != nil {
		r.Err = st.Err.Error()
	}
	return r
}

// recordingNews tells of the recording pausing on a write error, or
// resuming: a line on stderr, a recording record in JSON. Tracing goes
// on either way.
func (p *pipeline) recordingNews() error {
	changes := p.recorder.Changes()
	if changes == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range changes {
		r := &output.Recording{Time: c.Time, Paused: c.Paused, File: c.File, PausedFor: c.PausedFor, Dropped: c.Dropped, Errors: c.Errors}
		p.recState = RecordingState{File: c.File, Paused: c.Paused, Errors: c.Errors}
		if c.Paused {
			r.Err = c.Err.Error()
			p.recState.Since, p.recState.Err = c.Time, r.Err
		}
		if err := p.tellRecording(r); err != nil {
			return err
		}
	}
	return nil
}

// tellRecording says the recording paused or resumed: on stderr in every
// mode (-q too), and in the JSON stream.
func (p *pipeline) tellRecording(r *output.Recording) error {
	fmt.Fprintln(os.Stderr, output.RecordingLine(r))
	if p.quiet {
		return nil
	}
	return p.w.Recording(r)
}

// gap replays a gap record: the recording paused there, and resumed
// (file: the one the record was read from). The JSON stream gets the
// records the live run wrote; stderr one line.
func (p *pipeline) gap(at, until time.Time, dropped uint64, why, file string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gaps++
	fmt.Fprintf(os.Stderr, "socktrace: the recording paused at %s (%s) and resumed at %s in %s: %d transitions were not recorded\n",
		at.Local().Format("15:04:05"), safetext.Escape(why), until.Local().Format("15:04:05"), safetext.Escape(file), dropped)
	if p.quiet {
		return nil
	}
	if err := p.w.Recording(&output.Recording{Time: at, Paused: true, File: file, Err: why, Errors: p.gaps}); err != nil {
		return err
	}
	return p.w.Recording(&output.Recording{Time: until, File: file, PausedFor: until.Sub(at), Dropped: dropped, Errors: p.gaps})
}

// ringUse is the tracer's ring use, nil when replaying.
func (p *pipeline) ringUse() *analysis.RingUse {
	if p.ring == nil {
		return nil
	}
	size, peak := p.ring()
	return &analysis.RingUse{Size: size, Peak: peak}
}

// finish ends a trace or a replay: the summary if asked for; else, in
// the table, the destinations whose connects failed.
func (p *pipeline) finish(now time.Time, pressure func() (analysis.Pressure, error)) error {
	if p.quiet {
		return nil
	}
	if p.o.Summary {
		pr, err := pressure()
		if err != nil {
			// The namespace traced may be gone (its last process
			// exited): the summary still comes, its pressure figures
			// from the history.
			fmt.Fprintf(os.Stderr, "socktrace: summary: %v: CLOSE-WAIT, TIME-WAIT and listeners from the trace's history instead\n", err)
			pr = p.replayPressure()
		}
		return p.summary(now, pr)
	}
	if t, ok := p.w.(*output.Table); ok {
		return t.Failures(p.conns.Dests(), now)
	}
	return nil
}

// livePressure takes a fresh look, with sock_diag, at the sockets under
// pressure (CLOSE-WAIT, TIME-WAIT, listeners).
func (p *pipeline) livePressure() (analysis.Pressure, error) {
	socks, err := dumpNamespaces(p.o, analysis.PressureStates)
	if err != nil {
		return analysis.Pressure{}, err
	}
	want := map[uint32]bool{}
	for _, s := range socks {
		if s.Inode != 0 && (s.State == tcpstate.CloseWait || s.State == tcpstate.Listen) {
			want[s.Inode] = true
		}
	}
	owners, _, _ := owners.Scan(want)
	return analysis.Measure(analysis.PressureInput{
		Sockets: socks, Owners: owners, Table: p.table,
		Now: events.Monotonic(), Start: p.startK,
		CloseWaitAfter: p.o.CloseWaitAfter, Keep: p.o.keepSocket(owners),
		Identify: p.identifyPID,
	}), nil
}

// replayPressure is the pressure picture at the end of a recording, from
// its history: the sockets alive then, in the state they were last seen
// in (listener queues as the snapshot saw them).
func (p *pipeline) replayPressure() analysis.Pressure {
	var socks []snapshot.Socket
	owners := procs.Table{}
	ino := uint32(0)
	p.table.Live(func(r *timeline.Row) {
		s := snapshot.Socket{Family: r.Family, State: r.State, Src: r.Src, Dst: r.Dst, SPort: r.SPort, DPort: r.DPort, Cookie: r.Cookie, Netns: r.Netns}
		if r.InSnapshot && len(r.History) == 0 {
			s.RecvQ, s.SendQ = r.Snap().RecvQ, r.Snap().SendQ
			// A time-wait socket of the snapshot is gone when its timer
			// has run out.
			if r.State == tcpstate.TimeWait && r.Snap().Timer == snapshot.TimerTimewait && p.lastK > p.startK+uint64(r.Snap().Expires) {
				return
			}
		}
		if r.OwnerKnown {
			ino++
			s.Inode = ino
			owners[ino] = []procs.Owner{{PID: r.OwnerPID, Comm: r.OwnerComm}}
		}
		socks = append(socks, s)
	})
	return analysis.Measure(analysis.PressureInput{
		Sockets: socks, Owners: owners, Table: p.table,
		Now: p.lastK, Start: p.startK,
		CloseWaitAfter: p.o.CloseWaitAfter, Keep: p.o.keepSocket(owners),
	})
}
