package pipeline

import (
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/safetext"
)

// Read replays capture files: open them as a source, set the pipeline up
// as the recording says, then consume their records.
func Read(o *Options, files []string) error {
	signal.Ignore(syscall.SIGPIPE)
	src, err := openCapture(o, files)
	if err != nil {
		return err
	}
	defer src.close()
	p := src.newPipeline()
	return p.consume(src)
}

// ReadTo replays capture files as Read does (the same errors for files
// that cannot be read, the same analysis and alerts), handing what it
// shows to w instead of stdout, and what it learns to hooks (nil: none).
// It returns the first file's header.
func ReadTo(o *Options, files []string, w Writer, hooks *Hooks) (capture.Header, error) {
	warn := warnOfCapture
	if hooks != nil && hooks.Warn != nil {
		warn = func(msg string) { warnOfCapture(msg); hooks.Warn(msg) }
	}
	src, err := openCaptureWarn(o, files, warn)
	if err != nil {
		return capture.Header{}, err
	}
	defer src.close()
	p := src.newPipeline()
	p.w = w
	w.SetNetnsNames(src.r.NetnsName)
	if hooks != nil {
		p.hooks = hooks
	}
	return src.h, p.consume(src)
}

// captureSource feeds the pipeline the records of capture files, as the
// live run fed them.
type captureSource struct {
	o     *Options
	r     *capture.Reader
	close func()
	rec   capture.Record
	h     capture.Header
	s     *snap // the snapshot being read back, if any
	count int   // its sockets so far
}

// openCapture opens the files; with --follow, SIGINT and SIGTERM end
// the reading.
func openCapture(o *Options, files []string) (*captureSource, error) {
	return openCaptureWarn(o, files, warnOfCapture)
}

// openCaptureWarn is openCapture telling warn what is amiss with the
// files (cut short, parts missing).
func openCaptureWarn(o *Options, files []string, warn func(string)) (*captureSource, error) {
	stop := make(chan struct{})
	release := func() {}
	if o.Follow {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		release = func() { signal.Stop(sigs) }
		go func() { <-sigs; close(stop) }()
	}
	r, err := capture.Open(files, capture.ReadOptions{Follow: o.Follow, Stop: stop, Warn: warn})
	if err != nil {
		release()
		return nil, err
	}
	return &captureSource{o: o, r: r, h: r.Header(), close: func() { r.Close(); release() }}, nil
}

// warnOfCapture says something is amiss with the files read.
func warnOfCapture(msg string) { fmt.Fprintf(os.Stderr, "socktrace: %s\n", msg) }

// newPipeline is a pipeline set up as the recording says: its start,
// its namespaces' names, and DNS names from its answers.
func (c *captureSource) newPipeline() *pipeline {
	h := &c.h
	p := newPipeline(c.o, h.Started, uint64(h.Started.Sub(h.BootTime)))
	p.w.SetNetnsNames(c.r.NetnsName) // as the recording named them
	if !c.o.NoDNS {
		p.dns = newDNSNames(dnscache.Options{})
	}
	if c.o.Output == "table" {
		// The header comes from the file: text of another machine.
		fmt.Fprintf(os.Stderr, "socktrace: reading a capture of %s (kernel %s) from %s, filters: %s\n",
			safetext.Escape(h.Host), safetext.Escape(h.Kernel), h.Started.Local().Format(time.DateTime), safetext.Escape(h.Filter))
	}
	return p
}

// feed hands the pipeline the files' records: all of them at once, or
// with --follow one at a time, so that each is shown as it comes.
func (c *captureSource) feed(p *pipeline) (batch, error) {
	for {
		if err := c.r.Next(&c.rec); err != nil {
			return batch{}, err // io.EOF: the files' end
		}
		if err := c.apply(p, &c.rec); err != nil {
			return batch{}, outputErr(err)
		}
		if c.o.Follow {
			return batch{drained: true}, nil
		}
	}
}

// apply hands one record to the pipeline.
func (c *captureSource) apply(p *pipeline, rec *capture.Record) error {
	switch rec.Kind {
	case capture.KindSnapshotStart:
		c.s = &snap{owners: procs.Table{}, start: rec.Start, end: rec.End, at: rec.At}
		c.count = 0
	case capture.KindSocket:
		c.addSocket(rec)
	case capture.KindSnapshotEnd:
		if c.count != rec.Count {
			warnOfCapture(fmt.Sprintf("the snapshot has %d of its %d sockets", c.count, rec.Count))
		}
		return c.endSnapshot(p)
	case capture.KindTransition:
		if err := c.endSnapshot(p); err != nil {
			return err
		}
		// The capture stores packet events as transitions of their
		// kind: told apart here, as the tracer tells them apart live.
		if rec.Transition.Kind.IsPacket() {
			return p.packet((*record.Packet)(&rec.Transition))
		}
		return p.transition(&rec.Transition)
	case capture.KindGap:
		if err := c.endSnapshot(p); err != nil {
			return err
		}
		return p.gap(rec.At, rec.Until, rec.Lost, rec.Err, c.r.File())
	case capture.KindAlert:
		// A replay raises its own alerts; the recorded one is for
		// whoever asks (the report says why a flight recording was
		// made).
		if p.hooks.RecordedAlert != nil {
			p.hooks.RecordedAlert(&rec.Alert)
		}
	case capture.KindListen:
		if err := c.endSnapshot(p); err != nil {
			return err
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.listenSample(&rec.Listen)
	case capture.KindDNS:
		if p.dns != nil {
			return p.observeDNS(&rec.DNS)
		}
	case capture.KindLost, capture.KindSkipped:
		if err := c.endSnapshot(p); err != nil {
			return err
		}
		loss := events.Loss{At: rec.At}
		if rec.Kind == capture.KindLost {
			loss.Lost = rec.Lost
		} else {
			loss.Skipped = rec.Lost
		}
		return p.loss(&loss)
	}
	return nil
}

// addSocket adds a socket to the snapshot being read back.
func (c *captureSource) addSocket(rec *capture.Record) {
	if c.s == nil { // the start of the snapshot is in a file rotated away
		c.s = &snap{owners: procs.Table{}, at: c.h.Started}
	}
	s := c.s
	s.socks = append(s.socks, rec.Socket)
	if rec.Owner != nil {
		if s.ids == nil {
			s.ids = map[uint64]*identity.Identity{}
		}
		s.ids[rec.Socket.Cookie] = rec.Owner
	}
	if rec.Actual.IsValid() {
		if s.actual == nil {
			s.actual = map[uint64]netip.AddrPort{}
		}
		s.actual[rec.Socket.Cookie] = rec.Actual
	}
	if rec.Socket.Inode != 0 && len(rec.Users) > 0 {
		s.owners[rec.Socket.Inode] = append([]procs.Owner(nil), rec.Users...)
	}
	c.count++
}

// endSnapshot merges the snapshot read back, if any: at its end record,
// or at the first record after it (its end is in a file not read).
func (c *captureSource) endSnapshot(p *pipeline) error {
	if c.s == nil {
		return nil
	}
	err := p.mergeSnapshot(c.s)
	c.s = nil
	return err
}

// caughtUp: a replay reconciles nothing (a capture holds no dumps).
func (c *captureSource) caughtUp(p *pipeline, k uint64) bool { return true }

// end merges a snapshot still open, writes the summary or failures from
// the recording's history, and says how much was shown, and lost.
func (c *captureSource) end(p *pipeline) error {
	if err := c.endSnapshot(p); err != nil && !isBrokenPipe(err) {
		return err
	}
	replayed := func() (analysis.Pressure, error) { return p.replayPressure(), nil }
	if err := p.finish(p.lastWall, replayed); err != nil && !isBrokenPipe(err) {
		return err
	}
	if err := p.flush(); err != nil && !isBrokenPipe(err) {
		return err
	}
	if c.o.Output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost, %d skipped by the kernel\n", p.shown, p.lost, p.skipped)
	}
	return nil
}
