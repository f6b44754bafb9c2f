package main

import (
	"bufio"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// snap is a socket snapshot, as taken or as read back from a capture.
type snap struct {
	socks      []snapshot.Socket
	owners     procs.Table
	start, end uint64 // CLOCK_MONOTONIC, around the dump
	at         time.Time
}

// pipeline is what happens to the snapshot and to each record, whether
// they come live from the kernel or from a capture file: the same
// merging, analysis, filtering and output, so a replay shows what the
// live run showed.
type pipeline struct {
	o       *options
	stdout  *bufio.Writer
	w       writer
	quiet   bool            // -q: no live output
	rec     *capture.Writer // -w: recording; nil if not
	table   *timeline.Table
	conns   *analysis.Connects
	started time.Time // when the trace began
	startK  uint64    // the same, CLOCK_MONOTONIC

	shown, lost uint64
	skipped     uint64    // state changes the kernel did not run the program for
	lastWall    time.Time // of the latest record
	lastK       uint64
}

func newPipeline(o *options, started time.Time, startK uint64) *pipeline {
	stdout := bufio.NewWriterSize(os.Stdout, 64<<10)
	return &pipeline{
		o: o, stdout: stdout, w: newWriter(o, stdout),
		table: timeline.NewCap(o.history), conns: analysis.NewConnects(o.analysis),
		started: started, startK: startK, lastWall: started, lastK: startK,
	}
}

// writer writes transitions, socket rows, alerts and summaries.
type writer interface {
	output.Writer
	Socket(r *timeline.Row, at time.Time) error
	Alert(*analysis.Alert) error
	Summary(*analysis.Summary) error
}

func newWriter(o *options, stdout *bufio.Writer) writer {
	if o.output == "json" {
		return output.NewJSON(stdout)
	}
	return output.NewTable(stdout, os.Stderr, o.table)
}

// snapshot merges a snapshot into the history, records it, and shows the
// sockets that pass the filter.
func (p *pipeline) snapshot(s *snap) error {
	rows := p.table.AddSnapshot(s.socks, s.owners, s.start, s.end)
	if p.rec != nil {
		if err := p.rec.SnapshotStart(s.at, s.start, s.end); err != nil {
			return err
		}
		for i := range s.socks {
			var users []procs.Owner
			if s.socks[i].Inode != 0 {
				users = s.owners[s.socks[i].Inode]
			}
			if err := p.rec.Socket(&s.socks[i], users); err != nil {
				return err
			}
		}
		if err := p.rec.SnapshotEnd(len(s.socks)); err != nil {
			return err
		}
	}
	var kept []*timeline.Row
	for _, r := range rows {
		subj := subjectOfRow(r)
		if p.o.match(&subj) {
			kept = append(kept, r)
			p.conns.Pending(r, s.at)
		}
	}
	if p.quiet {
		return nil
	}
	for _, r := range kept {
		if err := p.w.Socket(r, s.at); err != nil {
			return err
		}
	}
	if len(kept) > 0 && p.o.output == "table" {
		p.stdout.WriteString("\n")
	}
	return nil
}

// event handles one transition or loss notice.
func (p *pipeline) event(r *events.Record) error {
	if r.Lost > 0 || r.Skipped > 0 {
		p.lastWall = r.Time
		if r.Lost > 0 {
			p.lost += r.Lost
			if p.rec != nil {
				if err := p.rec.Lost(r.Lost, p.lost, r.Time); err != nil {
					return err
				}
			}
			if !p.quiet {
				if err := p.w.Lost(r.Lost, p.lost, r.Time); err != nil {
					return err
				}
			}
		}
		if r.Skipped > 0 {
			p.skipped += r.Skipped
			if p.rec != nil {
				if err := p.rec.Skipped(r.Skipped, p.skipped, r.Time); err != nil {
					return err
				}
			}
			if !p.quiet {
				return p.w.Skipped(r.Skipped, p.skipped, r.Time)
			}
		}
		return nil
	}
	t := &r.Transition
	p.lastWall, p.lastK = t.Time, t.Ktime
	// Record the transition as the kernel gave it: a replay merges it
	// into the same history and comes to the same owner.
	if p.rec != nil {
		if err := p.rec.Transition(t); err != nil {
			return err
		}
	}
	row := p.table.Apply(t)
	subj := filter.OfTransition(t)
	show := p.o.match(&subj)
	// The history follows sockets into and out of the states asked for:
	// leaving syn-sent is how a connect attempt ends.
	subj.State = t.Old
	var err error
	if show || p.o.match(&subj) {
		if a := p.conns.Observe(t, row); a != nil && !p.quiet {
			err = p.w.Alert(a)
		}
	} else if t.New == tcpstate.Close {
		p.conns.Forget(row)
	}
	if show && err == nil {
		p.shown++
		if !p.quiet {
			err = p.w.Transition(t)
		}
	}
	return err
}

// flush hands the output (and the recording) to the kernel.
func (p *pipeline) flush() error {
	if p.rec != nil {
		if err := p.rec.Flush(); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// summary writes the summary, with the pressure picture given.
func (p *pipeline) summary(now time.Time, pressure analysis.Pressure) error {
	return p.w.Summary(&analysis.Summary{
		Time: now, Since: p.started,
		Dests: p.conns.Dests(), DestsEvicted: p.conns.Evicted(),
		Pressure: pressure, History: p.table.Stats(), Lost: p.lost, Skipped: p.skipped,
	})
}

// finish ends a trace or a replay: the summary if asked for; else, in
// the table, the destinations whose connects failed.
func (p *pipeline) finish(now time.Time, pressure func() (analysis.Pressure, error)) error {
	if p.quiet {
		return nil
	}
	if p.o.summary {
		pr, err := pressure()
		if err != nil {
			return err
		}
		return p.summary(now, pr)
	}
	if t, ok := p.w.(*output.Table); ok {
		return t.Failures(p.conns.Dests(), now)
	}
	return nil
}

// keepSocket applies the filter to a socket of a pressure dump.
func (o *options) keepSocket(owners procs.Table) func(*snapshot.Socket) bool {
	return func(s *snapshot.Socket) bool {
		subj := filter.Subject{State: s.State, Family: s.Family, Src: s.Src, Dst: s.Dst, SPort: s.SPort, DPort: s.DPort, Netns: s.Netns}
		if us := owners[s.Inode]; s.Inode != 0 && len(us) > 0 {
			subj.OwnerKnown, subj.PID, subj.Comm = true, us[0].PID, us[0].Comm
		}
		return o.match(&subj)
	}
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
	owners := procs.Scan(want)
	return analysis.Measure(analysis.PressureInput{
		Sockets: socks, Owners: owners, Table: p.table,
		Now: events.Monotonic(), Start: p.startK,
		CloseWaitAfter: p.o.closeWaitAfter, Keep: p.o.keepSocket(owners),
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
			s.RecvQ, s.SendQ = r.Diag.RecvQ, r.Diag.SendQ
			// A time-wait socket of the snapshot is gone when its timer
			// has run out.
			if r.State == tcpstate.TimeWait && r.Diag.Timer == snapshot.TimerTimewait && p.lastK > p.startK+uint64(r.Diag.Expires) {
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
		CloseWaitAfter: p.o.closeWaitAfter, Keep: p.o.keepSocket(owners),
	})
}
