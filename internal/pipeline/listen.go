package pipeline

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// The pipeline's side of overflowing listeners: a poller looks at the
// listeners' drop counts about once a second in a goroutine of its own
// (package listeners does the counting); the reading goroutine turns
// each poll into samples, records them (-w), and raises listen-overflow
// and listen-recovered alerts from them, live or replayed alike.

// listenEvery is how often the listeners are polled.
const listenEvery = time.Second

// listenNamespacesEvery: with --netns all, how many polls reuse one
// listing of the namespaces (listing them walks /proc).
const listenNamespacesEvery = 10

// listenPoll is a poll with the owners found for listeners that drop.
type listenPoll struct {
	poll   *listeners.Poll
	owners procs.Table
	err    error
}

// listenPoller polls in the background.
type listenPoller struct {
	o       *Options
	polls   chan listenPoll
	stop    chan struct{}
	paths   []string
	n       int
	owners  procs.Table // by inode, of listeners that dropped (the poller's own)
	lastErr string
}

func newListenPoller(o *Options) *listenPoller {
	return &listenPoller{o: o, polls: make(chan listenPoll, 1), stop: make(chan struct{}), owners: procs.Table{}}
}

// namespaces are the paths of the namespaces to poll: the trace's.
func (lp *listenPoller) namespaces() []string {
	switch lp.o.Netns {
	case "":
		return []string{""}
	case "all":
		if lp.paths == nil || lp.n%listenNamespacesEvery == 0 {
			if list, err := snapshot.Namespaces(); err == nil {
				lp.paths = list
			} else if lp.paths == nil {
				lp.paths = []string{""}
			}
		}
		lp.n++
		return lp.paths
	}
	return []string{lp.o.Netns}
}

// poll dumps the listeners now, and looks for the owners of those that
// dropped SYNs (once per socket).
func (lp *listenPoller) poll() listenPoll {
	p, err := listeners.Dump(lp.namespaces(), lp.o.Filter.IPv4, lp.o.Filter.IPv6, time.Now())
	want := map[uint32]bool{}
	for _, l := range p.Listeners {
		if _, ok := lp.owners[l.Inode]; !ok && l.Drops > 0 && l.Inode != 0 {
			want[l.Inode] = true
		}
	}
	if len(want) > 0 {
		found, _, _ := owners.Scan(want)
		for ino := range want {
			lp.owners[ino] = found[ino] // nil when none: not looked for again
		}
	}
	// The reading goroutine gets the owners of this poll's listeners,
	// in a table of its own: the cache is the poller's.
	own := procs.Table{}
	for _, l := range p.Listeners {
		if us := lp.owners[l.Inode]; l.Inode != 0 && len(us) > 0 {
			own[l.Inode] = us
		}
	}
	return listenPoll{poll: p, owners: own, err: err}
}

// run polls every listenEvery until stopped, handing each poll to the
// reading goroutine (wake wakes it); a poll not taken yet is replaced.
func (lp *listenPoller) run(wake func()) {
	t := time.NewTicker(listenEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-lp.stop:
			return
		}
		r := lp.poll()
		select {
		case <-lp.polls: // the reader is behind: the newer counts hold the older's
		default:
		}
		lp.polls <- r
		wake()
	}
}

// startListening polls the listeners once, for the counts they start
// from, then every second in the background until p.listenStop. A live
// run only.
func (p *pipeline) startListening(o *Options, wake func()) error {
	lp := newListenPoller(o)
	p.listenPoller = lp
	// The first poll synchronously: the drops before the trace are the
	// baseline, whatever comes next.
	if err := p.applyListenPoll(lp.poll()); err != nil {
		return outputErr(err)
	}
	// What the poller hands over is read from the channel: polls are
	// serialised with the final one (finalListenPoll) by stopping it.
	done := make(chan struct{})
	go func() { lp.run(wake); close(done) }()
	p.listenStop = func() {
		select {
		case <-lp.stop:
		default:
			close(lp.stop)
		}
		<-done
	}
	return nil
}

// takeListenPoll applies a background poll, if one is waiting.
func (p *pipeline) takeListenPoll() error {
	if p.listenPoller == nil {
		return nil
	}
	select {
	case r := <-p.listenPoller.polls:
		return p.applyListenPoll(r)
	default:
		return nil
	}
}

// finalListenPoll polls once more at the end of a live run, so that a
// short run's drops are counted: the poller is stopped first.
func (p *pipeline) finalListenPoll() error {
	if p.listenPoller == nil {
		return nil
	}
	p.listenStop()
	if err := p.takeListenPoll(); err != nil {
		return err
	}
	return p.applyListenPoll(p.listenPoller.poll())
}

// applyListenPoll turns a poll into samples and takes each.
func (p *pipeline) applyListenPoll(r listenPoll) error {
	lp := p.listenPoller
	if r.err != nil && r.err.Error() != lp.lastErr {
		lp.lastErr = r.err.Error()
		fmt.Fprintf(os.Stderr, "socktrace: %v: listeners there are not watched for full accept queues (listen-overflow) until it can be read\n", r.err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	samples := p.listen.Samples(r.poll, func(l *listeners.Listener) listeners.Owner {
		if row := p.table.Lookup(l.Cookie); row != nil && row.OwnerKnown {
			return listeners.Owner{Known: true, PID: row.OwnerPID, Comm: row.OwnerComm, ID: row.OwnerID}
		}
		if us := r.owners[l.Inode]; l.Inode != 0 && len(us) > 0 {
			return listeners.Owner{Known: true, PID: us[0].PID, Comm: us[0].Comm, ID: p.identifyPID(us[0].PID)}
		}
		return listeners.Owner{}
	})
	for i := range samples {
		if err := p.listenSample(&samples[i]); err != nil {
			return err
		}
	}
	return nil
}

// listenSample takes one sample, live or replayed (p.mu held): recorded,
// applied, and its alert written if it makes one and passes the filter.
func (p *pipeline) listenSample(s *listeners.Sample) error {
	if p.recorder != nil || p.flight != nil {
		if err := p.recordNetns(s.Netns); err != nil {
			return err
		}
	}
	if p.flight != nil {
		p.flight.Listen(s)
	}
	if p.recorder != nil {
		if err := p.recorder.Listen(s); err != nil {
			return err
		}
	}
	ev := p.listen.Apply(s)
	if ev == nil || (p.quiet && p.flight == nil) {
		return nil
	}
	if !p.matchListener(ev) {
		return nil
	}
	a := &analysis.Alert{Kind: analysis.ListenOverflow, Time: ev.Time, Listen: ev}
	if ev.Kind == listeners.Recovered {
		a.Kind = analysis.ListenRecovered
	}
	if err := p.flightAlert(a); err != nil || p.quiet {
		return err
	}
	return p.w.Alert(a)
}

// matchListener: a listener's alert passes the filter as the listener
// (--sport 9093, --comm broker, --state listen), or as a connect to it
// (--dport 9093, --state syn-sent: whoever watches the clients hears
// of the listener that drops their SYNs).
func (p *pipeline) matchListener(ev *listeners.Event) bool {
	fam := uint16(unix.AF_INET6)
	if ev.Addr.Is4() {
		fam = unix.AF_INET
	}
	asListener := filter.Subject{State: tcpstate.Listen, Family: fam, Src: ev.Addr, SPort: ev.Port, Netns: ev.Netns,
		OwnerKnown: ev.Owner.Known, PID: ev.Owner.PID, Comm: ev.Owner.Comm, Owner: ev.Owner.ID}
	if p.o.Match(&asListener) {
		return true
	}
	asConnect := filter.Subject{State: tcpstate.SynSent, Family: fam, Dst: ev.Addr, DPort: ev.Port, Netns: ev.Netns}
	return p.o.Match(&asConnect)
}

// overflowingListener points a destination's failing alert at the local
// listener it reaches, when that listener is dropping SYNs.
func (p *pipeline) overflowingListener(a *analysis.Alert) {
	if a != nil && a.Kind == analysis.TurnedFailing {
		a.Listener = p.listen.Overflowing(a.Dest.Netns, a.Dest.Addr, a.Dest.Port)
	}
}

// listenerDrops adds the listeners that dropped SYNs during the trace to
// a pressure picture (a copy: the one given is left alone).
func (p *pipeline) listenerDrops(pr analysis.Pressure) analysis.Pressure {
	pr.Listeners = analysis.WithDrops(append([]analysis.Listener(nil), pr.Listeners...), p.listen.Dropping())
	return pr
}
