package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// takeSnapshot lists the sockets of the chosen namespaces into table and
// returns the rows that pass the filter.
func takeSnapshot(o *options, table *timeline.Table) ([]*timeline.Row, error) {
	start := events.Monotonic()
	socks, err := dumpNamespaces(o, o.filter.States)
	if err != nil {
		return nil, err
	}
	end := events.Monotonic()

	want := make(map[uint32]bool, len(socks))
	for _, s := range socks {
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	rows := table.AddSnapshot(socks, procs.Scan(want), start, end)
	kept := rows[:0]
	for _, r := range rows {
		s := subjectOfRow(r)
		if o.match(&s) {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

func subjectOfRow(r *timeline.Row) filter.Subject {
	return filter.Subject{
		State: r.State, Family: r.Family, Src: r.Src, Dst: r.Dst,
		SPort: r.SPort, DPort: r.DPort,
		OwnerKnown: r.OwnerKnown, PID: r.OwnerPID, Comm: r.OwnerComm,
		Netns: r.Netns,
	}
}

// socketWriter is what writes snapshot rows.
type socketWriter interface {
	Socket(r *timeline.Row, at time.Time) error
}

func writeRows(w socketWriter, rows []*timeline.Row) error {
	now := time.Now()
	for _, r := range rows {
		if err := w.Socket(r, now); err != nil {
			return err
		}
	}
	return nil
}

// runOnce is --once: list the sockets, like ss -tanpo, and exit.
func runOnce(o *options) error {
	rows, err := takeSnapshot(o, timeline.New())
	if err != nil {
		return err
	}
	stdout := bufio.NewWriterSize(os.Stdout, 64<<10)
	w := newWriter(o, stdout)
	if err := writeRows(w, rows); err != nil && !isBrokenPipe(err) {
		return fmt.Errorf("write output: %w", err)
	}
	if err := stdout.Flush(); err != nil && !isBrokenPipe(err) {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// summary takes a fresh look at the sockets under pressure (CLOSE-WAIT,
// TIME-WAIT, listeners) and puts it with the connect history.
func summary(o *options, table *timeline.Table, conns *analysis.Connects, started time.Time, startedK uint64, lost uint64) (*analysis.Summary, error) {
	socks, err := dumpNamespaces(o, analysis.PressureStates)
	if err != nil {
		return nil, err
	}
	want := map[uint32]bool{}
	for _, s := range socks {
		if s.Inode != 0 && (s.State == tcpstate.CloseWait || s.State == tcpstate.Listen) {
			want[s.Inode] = true
		}
	}
	owners := procs.Scan(want)
	p := analysis.Measure(analysis.PressureInput{
		Sockets: socks, Owners: owners, Table: table,
		Now: events.Monotonic(), Start: startedK,
		CloseWaitAfter: o.closeWaitAfter,
		Keep: func(s *snapshot.Socket) bool {
			subj := filter.Subject{State: s.State, Family: s.Family, Src: s.Src, Dst: s.Dst, SPort: s.SPort, DPort: s.DPort, Netns: s.Netns}
			if us := owners[s.Inode]; s.Inode != 0 && len(us) > 0 {
				subj.OwnerKnown, subj.PID, subj.Comm = true, us[0].PID, us[0].Comm
			}
			return o.match(&subj)
		},
	})
	return &analysis.Summary{
		Time: time.Now(), Since: started,
		Dests: conns.Dests(), DestsEvicted: conns.Evicted(),
		Pressure: p, History: table.Stats(), Lost: lost,
	}, nil
}

// dumpNamespaces lists the sockets in the given states of the namespaces
// --netns names.
func dumpNamespaces(o *options, states tcpstate.Mask) ([]snapshot.Socket, error) {
	paths := []string{o.netns}
	if o.netns == "all" {
		var err error
		if paths, err = snapshot.Namespaces(); err != nil {
			return nil, err
		}
	}
	var socks []snapshot.Socket
	for _, p := range paths {
		s, err := snapshot.Dump(snapshot.Options{States: states, IPv4: o.filter.IPv4, IPv6: o.filter.IPv6, Netns: p})
		if err != nil {
			if o.netns == "all" && os.IsNotExist(err) {
				continue // the process went away
			}
			return nil, err
		}
		socks = append(socks, s...)
	}
	return socks, nil
}
