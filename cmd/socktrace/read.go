package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/spf13/cobra"
)

func newReadCmd() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "read [flags] FILE... [-- FILTER]",
		Short: "Replay a capture made with --write, with the same filters, views and analysis",
		Long: `read replays capture files written by socktrace --write: the socket
snapshot, every transition and every loss, through the same filters,
table or JSON output, alerts and summary as a live trace. It needs no
privileges and works on any machine.

FILE may be several files or a quoted glob ('cap.st*'): the files of a
rotated recording are read in recording order whatever their order on the
command line. An ss filter expression goes after --.

A truncated or damaged file (the recorder was killed, the disk filled up)
is read up to its last complete record; what was skipped is reported on
stderr.`,
		Example: `  socktrace read /var/tmp/incident.st
  socktrace read --state syn-sent --dport 9092 --summary /var/tmp/incident.st
  socktrace read -o json 'incident.st*' -- 'dst 10.0.0.0/8' | jq .
  socktrace read --follow /var/tmp/incident.st     # like tail -f`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("no capture file given: socktrace read FILE... [-- FILTER] (files written with socktrace -w FILE)")
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, expr := args, []string(nil)
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				files, expr = args[:dash], args[dash:]
			}
			if len(files) == 0 {
				return fmt.Errorf("no capture file given: socktrace read FILE... [-- FILTER]")
			}
			f.attach = events.AttachAuto
			o, err := f.parse(expr)
			if err != nil {
				return err
			}
			return runRead(o, files)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace read --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	addViewFlags(fl, f)
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep reading as the file grows, and into the next rotated file, like tail -f (Ctrl-C to stop)")
	return cmd
}

// runRead replays capture files.
func runRead(o *options, files []string) error {
	signal.Ignore(syscall.SIGPIPE)
	stop := make(chan struct{})
	if o.follow {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		go func() { <-sigs; close(stop) }()
	}
	warn := func(msg string) { fmt.Fprintf(os.Stderr, "socktrace: %s\n", msg) }
	r, err := capture.Open(files, capture.ReadOptions{Follow: o.follow, Stop: stop, Warn: warn})
	if err != nil {
		return err
	}
	defer r.Close()
	h := r.Header()
	startK := uint64(h.Started.Sub(h.BootTime))
	p := newPipeline(o, h.Started, startK)
	if o.output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: reading a capture of %s (kernel %s) from %s, filters: %s\n",
			h.Host, h.Kernel, h.Started.Local().Format(time.DateTime), h.Filter)
	}

	var (
		rec   capture.Record
		ev    events.Record
		s     *snap
		count int
	)
	endSnapshot := func() error {
		if s == nil {
			return nil
		}
		err := p.snapshot(s)
		s = nil
		return err
	}
	for {
		err := r.Next(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case capture.KindSnapshotStart:
			s = &snap{owners: procs.Table{}, start: rec.Start, end: rec.End, at: rec.At}
			count = 0
		case capture.KindSocket:
			if s == nil { // the start of the snapshot is in a file rotated away
				s = &snap{owners: procs.Table{}, at: h.Started}
			}
			s.socks = append(s.socks, rec.Socket)
			if rec.Socket.Inode != 0 && len(rec.Users) > 0 {
				s.owners[rec.Socket.Inode] = append([]procs.Owner(nil), rec.Users...)
			}
			count++
		case capture.KindSnapshotEnd:
			if count != rec.Count {
				warn(fmt.Sprintf("the snapshot has %d of its %d sockets", count, rec.Count))
			}
			err = endSnapshot()
		case capture.KindTransition:
			if err = endSnapshot(); err == nil {
				ev = events.Record{Transition: rec.Transition}
				err = p.event(&ev)
			}
		case capture.KindLost, capture.KindSkipped:
			if err = endSnapshot(); err == nil {
				ev = events.Record{Transition: events.Transition{Time: rec.At}}
				if rec.Kind == capture.KindLost {
					ev.Lost = rec.Lost
				} else {
					ev.Skipped = rec.Lost
				}
				err = p.event(&ev)
			}
		}
		if err == nil && o.follow {
			err = p.flush()
		}
		if err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}
	if err := endSnapshot(); err != nil && !isBrokenPipe(err) {
		return err
	}
	replayed := func() (analysis.Pressure, error) { return p.replayPressure(), nil }
	if err := p.finish(p.lastWall, replayed); err != nil && !isBrokenPipe(err) {
		return err
	}
	if err := p.flush(); err != nil && !isBrokenPipe(err) {
		return err
	}
	if o.output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost, %d skipped by the kernel\n", p.shown, p.lost, p.skipped)
	}
	return nil
}
