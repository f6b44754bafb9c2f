package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
	"golang.org/x/sys/unix"
)

// runTrace streams transitions until Ctrl-C, SIGTERM, --duration, or a
// closed stdout.
func runTrace(ctx context.Context, o *options) error {
	// A closed stdout (socktrace | head) must end us quietly, not kill us.
	signal.Ignore(syscall.SIGPIPE)

	tr, err := events.Open(o.tracer)
	if err != nil {
		return err
	}
	defer tr.Close()

	stdout := bufio.NewWriterSize(os.Stdout, 64<<10)
	w := newWriter(o, stdout)
	if o.output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: tracing TCP state transitions (%s); Ctrl-C to stop\n", tr.Method())
	}

	// The program is attached before the snapshot is taken, so nothing
	// that happens meanwhile is missed; the table sorts out overlaps.
	table := timeline.NewCap(o.history)
	conns := analysis.NewConnects(o.analysis)
	started, startedK := time.Now(), events.Monotonic()
	if o.snapshot {
		rows, err := takeSnapshot(o, table)
		if err != nil {
			return err
		}
		for _, r := range rows {
			conns.Pending(r, started)
		}
		if err := writeRows(w, rows); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return fmt.Errorf("write output: %w", err)
		}
		if len(rows) > 0 && o.output == "table" {
			stdout.WriteString("\n")
		}
		if err := w.Flush(); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return fmt.Errorf("write output: %w", err)
		}
	}

	if o.readyFile != "" {
		if err := writeReadyFile(o.readyFile); err != nil {
			return err
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopped := make(chan struct{})
	defer close(stopped)
	// SIGUSR1 and --interval ask for a summary; the reading loop makes it.
	var wantSummary atomic.Bool
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		var tick <-chan time.Time
		if o.interval > 0 {
			t := time.NewTicker(o.interval)
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
			wantSummary.Store(true)
			tr.Wake()
		}
	}()
	go func() {
		select {
		case <-sigs:
		case <-ctxDone(ctx):
		case <-stopped:
			return
		}
		tr.Stop()
	}()
	if o.duration > 0 {
		t := time.AfterFunc(o.duration, func() { tr.Stop() })
		defer t.Stop()
	}
	go watchClosed(os.Stdout, stopped, func() { tr.Stop() })

	var (
		rec       events.Record
		subj      filter.Subject
		shown     uint64
		lostTotal uint64
	)
	summarize := func() error {
		sum, err := summary(o, table, conns, started, startedK, lostTotal)
		if err != nil {
			return err
		}
		return w.Summary(sum)
	}
	for {
		err := tr.Read(&rec)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		var werr error
		switch {
		case rec.Woken:
			if wantSummary.Swap(false) {
				werr = summarize()
			}
		case rec.Lost > 0:
			lostTotal += rec.Lost
			werr = w.Lost(rec.Lost, lostTotal, rec.Time)
		default:
			row := table.Apply(&rec.Transition)
			subj = filter.OfTransition(&rec.Transition)
			show := o.match(&subj)
			// The history follows sockets into and out of the states
			// asked for: leaving syn-sent is how an attempt ends.
			subj.State = rec.Old
			if show || o.match(&subj) {
				if a := conns.Observe(&rec.Transition, row); a != nil {
					werr = w.Alert(a)
				}
			} else if rec.New == tcpstate.Close {
				conns.Forget(row)
			}
			if show && werr == nil {
				shown++
				werr = w.Transition(&rec.Transition)
			}
		}
		if werr == nil && tr.Buffered() == 0 {
			werr = w.Flush()
		}
		if werr != nil {
			if isBrokenPipe(werr) {
				return nil
			}
			return fmt.Errorf("write output: %w", werr)
		}
	}
	if o.summary {
		if err := summarize(); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}
	if err := w.Flush(); err != nil && !isBrokenPipe(err) {
		return fmt.Errorf("write output: %w", err)
	}
	if o.output == "table" {
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost\n", shown, lostTotal)
	}
	return nil
}

// writer writes transitions, socket rows, alerts and summaries.
type writer interface {
	output.Writer
	socketWriter
	Alert(*analysis.Alert) error
	Summary(*analysis.Summary) error
}

func newWriter(o *options, stdout *bufio.Writer) writer {
	if o.output == "json" {
		return output.NewJSON(stdout)
	}
	return output.NewTable(stdout, os.Stderr, o.table)
}

func ctxDone(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}

func isBrokenPipe(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)
}

// writeReadyFile writes our pid to path, atomically, so a script can wait
// for the file and know tracing is on.
func writeReadyFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".socktrace-ready-*")
	if err != nil {
		return fmt.Errorf("write --ready-file: %w", err)
	}
	_, err = tmp.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write --ready-file: %w", err)
	}
	return nil
}

// watchClosed calls stop when f is a pipe or socket whose reader has gone
// (POLLERR/POLLHUP), so `socktrace | head -1` ends even when no more
// transitions come to fail a write.
func watchClosed(f *os.File, done <-chan struct{}, stop func()) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO && st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return
	}
	for {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: 0}}
		n, err := unix.Poll(fds, 500)
		select {
		case <-done:
			return
		default:
		}
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			stop()
			return
		}
	}
}
