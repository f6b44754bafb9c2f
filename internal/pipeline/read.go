package pipeline

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/dnscache"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/safetext"
)

// Read replays capture files.
func Read(o *Options, files []string) error {
	signal.Ignore(syscall.SIGPIPE)
	stop := make(chan struct{})
	if o.Follow {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		go func() { <-sigs; close(stop) }()
	}
	warn := func(msg string) { fmt.Fprintf(os.Stderr, "socktrace: %s\n", msg) }
	r, err := capture.Open(files, capture.ReadOptions{Follow: o.Follow, Stop: stop, Warn: warn})
	if err != nil {
		return err
	}
	defer r.Close()
	h := r.Header()
	startK := uint64(h.Started.Sub(h.BootTime))
	p := newPipeline(o, h.Started, startK)
	p.w.SetNetnsNames(r.NetnsName) // as the recording named them
	if !o.NoDNS {
		p.dns = newDNSNames(dnscache.Options{})
	}
	if o.Output == "table" {
		// The header comes from the file: text of another machine.
		fmt.Fprintf(os.Stderr, "socktrace: reading a capture of %s (kernel %s) from %s, filters: %s\n",
			safetext.Escape(h.Host), safetext.Escape(h.Kernel), h.Started.Local().Format(time.DateTime), safetext.Escape(h.Filter))
	}

	var (
		rec   capture.Record
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
			if rec.Owner != nil {
				if s.ids == nil {
					s.ids = map[uint64]*identity.Identity{}
				}
				s.ids[rec.Socket.Cookie] = rec.Owner
			}
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
				err = p.transition(&rec.Transition)
			}
		case capture.KindGap:
			if err = endSnapshot(); err == nil {
				err = p.gap(rec.At, rec.Until, rec.Lost, rec.Err, r.File())
			}
		case capture.KindDNS:
			if p.dns != nil {
				err = p.observeDNS(&rec.DNS)
			}
		case capture.KindLost, capture.KindSkipped:
			if err = endSnapshot(); err == nil {
				loss := events.Loss{At: rec.At}
				if rec.Kind == capture.KindLost {
					loss.Lost = rec.Lost
				} else {
					loss.Skipped = rec.Lost
				}
				err = p.loss(&loss)
			}
		}
		if err == nil && o.Follow {
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
	if o.Output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost, %d skipped by the kernel\n", p.shown, p.lost, p.skipped)
	}
	return nil
}
