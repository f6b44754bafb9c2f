package pipeline

import (
	"errors"
	"io"
	"time"
)

// A source feeds the pipeline its records: live from the kernel
// (liveSource) or from capture files (captureSource). Both feed the one
// consuming loop, consume; a new source (a flight recorder's ring, say)
// plugs in here, and a new output (an exporter) in the pipeline, which
// every source feeds alike.
type source interface {
	// feed hands the pipeline records, in the reading goroutine, until
	// the loop has work to do between them; io.EOF: there are no more.
	// Per batch, not per record: the hot path stays in the source's
	// concrete type.
	feed(p *pipeline) (batch, error)
	// caughtUp tells whether every transition stamped before k (a
	// monotonic time) has been fed, so a reconciliation's dump can be
	// applied.
	caughtUp(p *pipeline, k uint64) bool
	// end writes what the run says last, after the last record.
	end(p *pipeline) error
}

// batch is what the loop learns from a feed.
type batch struct {
	// drained: nothing waits to be fed now, so the output goes out.
	drained bool
}

// errOutputClosed: the output's reader went away (socktrace | head); the
// run ends quietly there, without its end.
var errOutputClosed = errors.New("output closed")

// outputErr is err, or errOutputClosed if it says the output is closed.
func outputErr(err error) error {
	if isBrokenPipe(err) {
		return errOutputClosed
	}
	return err
}

// unlessOutputClosed is err, or nil if the output was closed.
func unlessOutputClosed(err error) error {
	if err == errOutputClosed {
		return nil
	}
	return err
}

// consume is the loop every run goes through: records from src, and
// between their batches the upkeep that does not belong to any one
// record (reconciliation, flushing, the recording's news), then the end.
func (p *pipeline) consume(src source) error {
	nextSync := time.Now().Add(syncInterval)
	for {
		b, err := src.feed(p)
		if err == io.EOF {
			return src.end(p)
		}
		if err == nil {
			err = p.betweenBatches(src, b, &nextSync)
		}
		if err != nil {
			return unlessOutputClosed(err)
		}
	}
}

// betweenBatches polls reconciliation, flushes a drained source's
// output (and syncs the recording every syncInterval), and tells of the
// recording pausing or resuming.
func (p *pipeline) betweenBatches(src source, b batch, nextSync *time.Time) error {
	err := p.pollReconcile(func(k uint64) bool { return src.caughtUp(p, k) })
	if err == nil {
		err = p.takeListenPoll()
	}
	if err == nil && b.drained {
		err = p.flush()
		if err == nil && p.recorder != nil && time.Now().After(*nextSync) {
			err = p.recorder.Sync()
			*nextSync = time.Now().Add(syncInterval)
		}
	}
	// A write error pauses the recording, never the trace.
	if err == nil && p.recorder != nil {
		err = p.recordingNews()
	}
	return outputErr(err)
}

// syncInterval: how often a recording is synced to disk, so that a power
// loss costs at most about this much of it.
const syncInterval = 2 * time.Second
