package pipeline

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// liveSource feeds the pipeline what the kernel says, as it says it:
// the tracer's records, read in place from its ring; and it owns what
// else a live run listens to: the signals and timers that wake the loop
// (wake.go) or end the run.
type liveSource struct {
	o     *Options
	tr    *events.Tracer
	wakes wakeups
	rec   events.Record // read in place, record after record
	n     uint          // reads so far, wake-ups included
	sigs  chan os.Signal
}

// openLive opens the tracer (attaching its programs) and says which of
// the optional hooks the kernel lacks, where the run would use them.
func openLive(o *Options) (*liveSource, error) {
	// SYNs and SYN-ACKs dropped of no socket: for the connect attempts
	// of their 4-tuple (drops.go).
	o.Tracer.DropTuples = true
	tr, err := events.Open(o.Tracer)
	if err != nil {
		return nil, err
	}
	if err := checkPrivileges(o, true); err != nil {
		tr.Close()
		return nil, err
	}
	// Retransmits and resets are always counted; errors only shown when
	// asked for.
	for _, h := range tr.Hooks() {
		if h.Err != nil && (h.Tracepoint != "sock:inet_sk_error_report" || o.Tracer.Kinds.Has(events.KindError)) {
			fmt.Fprintf(os.Stderr, "socktrace: %v: what it counts is missing from this run\n", h.Err)
		}
	}
	s := &liveSource{o: o, tr: tr}
	s.wakes.wake = tr.Wake
	return s, nil
}

// catchSignals catches SIGINT and SIGTERM, which end the run; the
// returned func lets them go. Called before the ready file is written: a
// script may signal us as soon as it appears. (This also undoes SIGINT
// being ignored, as it is in a shell's background jobs.)
func (s *liveSource) catchSignals() (release func()) {
	s.sigs = make(chan os.Signal, 1)
	signal.Notify(s.sigs, os.Interrupt, syscall.SIGTERM)
	return func() { signal.Stop(s.sigs) }
}

// start starts what wakes the loop (SIGUSR1, --interval, the
// once-a-second housekeeping) and what ends the run (the signals caught,
// ctx, --duration, a closed stdout); the returned func stops them all.
func (s *liveSource) start(ctx context.Context) (stop func()) {
	stopped := make(chan struct{})
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go s.askSummaries(usr1, stopped)
	go s.keepHouse(stopped)
	go s.stopOnSignal(ctx, stopped)
	var duration *time.Timer
	if s.o.Duration > 0 {
		duration = time.AfterFunc(s.o.Duration, func() { s.tr.Stop() })
	}
	if !s.o.Quiet {
		go watchClosed(os.Stdout, stopped, func() { s.tr.Stop() })
	}
	return func() {
		if duration != nil {
			duration.Stop()
		}
		signal.Stop(usr1)
		close(stopped)
	}
}

// askSummaries asks for a summary on SIGUSR1 and every --interval.
func (s *liveSource) askSummaries(usr1 <-chan os.Signal, stopped <-chan struct{}) {
	var tick <-chan time.Time
	if s.o.Interval > 0 {
		t := time.NewTicker(s.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-usr1:
		case <-tick:
		case <-stopped:
			return
		}
		s.wakes.ask(wakeSummary)
	}
}

// keepHouse wakes the loop once a second to look for namespaces that
// went away, and every --reconcile-every to reconcile.
func (s *liveSource) keepHouse(stopped <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	next := time.Now().Add(s.o.ReconcileEvery)
	for {
		select {
		case now := <-t.C:
			if s.o.ReconcileEvery > 0 && !now.Before(next) {
				s.wakes.want(wakeReconcile)
				next = now.Add(s.o.ReconcileEvery)
			}
			s.wakes.ask(wakeHousekeeping)
		case <-stopped:
			return
		}
	}
}

// stopOnSignal stops the tracer on SIGINT, SIGTERM or ctx's end: its
// Read then returns what is left in the ring, then io.EOF.
func (s *liveSource) stopOnSignal(ctx context.Context, stopped <-chan struct{}) {
	select {
	case <-s.sigs:
	case <-ctxDone(ctx):
	case <-stopped:
		return
	}
	s.tr.Stop()
}

// feed reads records from the ring and hands them to the pipeline until
// the loop has work: the ring is empty (flush), a wake-up came, or 64
// records went by under load (reconciliation is polled then: not for
// each record, it is a channel poll).
func (s *liveSource) feed(p *pipeline) (batch, error) {
	r := &s.rec
	for {
		err := s.tr.Read(r)
		woken := r.Type == events.WakeRecord
		// The heartbeat: when woken (at least once a second) and every
		// 256 records, not for each (the clock costs).
		if s.n++; woken || s.n%256 == 0 {
			p.beat.Store(time.Now().UnixNano())
		}
		if err != nil {
			return batch{}, err // io.EOF: stopped, and the ring drained
		}
		// DNS answers before the transitions that use them: a connect
		// names its address, an attempt's end checks it.
		if woken || (r.Type == events.TransitionRecord && (r.Old == tcpstate.SynSent || r.New == tcpstate.SynSent)) {
			if err = p.drainDNS(); err != nil {
				return batch{}, err
			}
		}
		if woken {
			err = s.woken(p)
		} else {
			err = p.event(r)
		}
		drained := s.tr.Buffered() == 0
		if err != nil || drained || woken || s.n%64 == 0 {
			return batch{drained: drained}, outputErr(err)
		}
		if p.recorder != nil {
			if err = p.recordingNews(); err != nil {
				return batch{}, outputErr(err)
			}
		}
	}
}

// woken does what the loop was woken for (wake.go); a paused recording
// tries to resume, and one whose file was removed pauses.
func (s *liveSource) woken(p *pipeline) error {
	var err error
	if s.wakes.take(wakeSummary) && !s.o.Quiet {
		err = s.summary(p)
	}
	if s.wakes.take(wakeReconcile) {
		p.reconciler.Request("interval")
	}
	if s.wakes.take(wakeHousekeeping) {
		p.watchNamespaces()
	}
	if p.recorder != nil {
		p.recorder.Tick(time.Now())
	}
	if ferr := p.flightTick(time.Now()); err == nil {
		err = ferr
	}
	return err
}

// summary writes a summary with a fresh look at the sockets under
// pressure.
func (s *liveSource) summary(p *pipeline) error {
	pr, err := p.livePressure()
	if err != nil {
		return err
	}
	return p.summary(time.Now(), pr)
}

// caughtUp: every transition stamped before k has been read.
func (s *liveSource) caughtUp(p *pipeline, k uint64) bool {
	if p.lastK >= k {
		return true
	}
	return s.tr.Buffered() == 0 && events.Monotonic() >= k
}

// end writes the summary or failures, closes the recording, and says
// how much was shown or recorded, and lost.
func (s *liveSource) end(p *pipeline) error {
	if err := p.finalListenPoll(); err != nil {
		if isBrokenPipe(err) {
			return nil
		}
		return err
	}
	if err := p.finish(time.Now(), p.livePressure); err != nil {
		if isBrokenPipe(err) {
			return nil
		}
		return err
	}
	if err := p.flightClose(); err != nil && !isBrokenPipe(err) {
		return err
	}
	if err := p.flush(); err != nil && !isBrokenPipe(err) {
		return err
	}
	if p.recorder != nil {
		if err := p.recorder.Close(); err != nil {
			return err
		}
		if err := p.recordingNews(); err != nil && !isBrokenPipe(err) {
			return err
		}
		p.flush()
	}
	s.sayTotals(p)
	return nil
}

// sayTotals says, on stderr, what the run recorded or showed, and lost.
func (s *liveSource) sayTotals(p *pipeline) {
	switch {
	case p.recorder != nil:
		st := p.recorder.State()
		paused := ""
		if st.Errors > 0 {
			paused = fmt.Sprintf("; the recording PAUSED %d time(s) on write errors: %d transitions not recorded", st.Errors, st.Dropped)
		}
		if st.Paused {
			paused += fmt.Sprintf(" (still paused at the end: %v)", st.Err)
		}
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions recorded to %s (%d bytes in %d file(s)), %d lost, %d skipped by the kernel%s\n",
			st.Transitions, s.o.Write, st.Bytes, st.Files, p.lost, p.skipped, paused)
	case s.o.Output == "table":
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost, %d skipped by the kernel\n", p.shown, p.lost, p.skipped)
	}
}
