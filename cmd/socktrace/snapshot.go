package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/timeline"
)

// takeSnapshot lists the sockets of the chosen namespaces into table and
// returns the rows that pass the filter.
func takeSnapshot(o *options, table *timeline.Table) ([]*timeline.Row, error) {
	paths := []string{o.netns}
	if o.netns == "all" {
		var err error
		if paths, err = snapshot.Namespaces(); err != nil {
			return nil, err
		}
	}
	start := events.Monotonic()
	var socks []snapshot.Socket
	for _, p := range paths {
		s, err := snapshot.Dump(snapshot.Options{States: o.filter.States, IPv4: o.filter.IPv4, IPv6: o.filter.IPv6, Netns: p})
		if err != nil {
			if o.netns == "all" && os.IsNotExist(err) {
				continue // the process went away
			}
			return nil, err
		}
		socks = append(socks, s...)
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
