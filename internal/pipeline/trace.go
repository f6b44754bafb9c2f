package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/binary"
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

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/cgroups"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/gcroom"
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/netnsname"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Trace streams transitions until Ctrl-C, SIGTERM, --duration, or a
// closed stdout.
func Trace(ctx context.Context, o *Options) error { return Run(ctx, o, nil) }

// Run is Trace with hooks for outputs that are not streams (the agent's
// metrics); hooks may be nil.
func Run(ctx context.Context, o *Options, hooks *Hooks) error {
	// A closed stdout (socktrace | head) must end us quietly, not kill us.
	signal.Ignore(syscall.SIGPIPE)

	// A ready file says a socktrace runs and traces: one left behind
	// (by a run killed with -9, or anything else) goes first, and ours
	// goes when we exit.
	if o.ReadyFile != "" {
		if err := removeReadyFile(o.ReadyFile); err != nil {
			return err
		}
		defer removeReadyFile(o.ReadyFile)
	}
	tr, err := events.Open(o.Tracer)
	if err != nil {
		return err
	}
	if err := checkPrivileges(o, true); err != nil {
		tr.Close()
		return err
	}
	// Say which of the optional hooks the kernel lacks, where the run
	// would use them (retransmits and resets are always counted; errors
	// only shown when asked for).
	for _, h := range tr.Hooks() {
		if h.Err != nil && (h.Tracepoint != "sock:inet_sk_error_report" || o.Tracer.Kinds.Has(events.KindError)) {
			fmt.Fprintf(os.Stderr, "socktrace: %v: what it counts is missing from this run\n", h.Err)
		}
	}
	defer tr.Close()
	// At full churn the tracer allocates a row a socket into a small live
	// heap: without room, the collector would run every few MiB allocated
	// (see gcroom).
	defer gcroom.Keep(gcRoom)()

	p := newPipeline(o, time.Now(), events.Monotonic())
	p.ring = tr.Ring
	p.ids = identity.NewResolver(o.HostRoot, o.KubeletLogDir)
	p.netnsName = netnsname.New(o.HostRoot, p.ids).Name
	p.w.SetNetnsNames(p.netnsName)
	p.quiet = o.Quiet
	p.dns = openDNS(o, cgroups.New(o.HostRoot).Mount(), tr.Clock())
	defer p.dns.close()
	if hooks != nil {
		p.hooks = hooks
	}
	p.reconciler = newReconciler(o, tr.Wake)
	if o.Write != "" {
		if p.recorder, err = capture.Create(o.Write, captureHeader(o, tr.Method(), p.started, p.startK), o.Capture); err != nil {
			return err
		}
		defer p.recorder.Close()
		p.recState = RecordingState{File: o.Write}
	}
	if o.Output == "table" && !o.Quiet {
		fmt.Fprintf(os.Stderr, "socktrace: tracing TCP state transitions (%s); Ctrl-C to stop\n", tr.Method())
	}

	// The program is attached before the snapshot is taken, so nothing
	// that happens meanwhile is missed; the timeline sorts out overlaps.
	if o.Snapshot {
		s, err := takeSnap(o)
		if err != nil {
			return err
		}
		if err := p.snapshot(s); err == nil {
			err = p.flush()
		}
		if err == nil && p.recorder != nil {
			err = p.recordingNews()
		}
		if err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}

	// Catch SIGINT and SIGTERM before saying we are ready: a script may
	// signal us as soon as the ready file appears. (This also undoes
	// SIGINT being ignored, as it is in a shell's background jobs.)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// Healthy from here: every hook attached (events.Open attaches the
	// transitions' program last), passive DNS too, the snapshot merged,
	// about to read. (Before the ready file, so whoever waits for it
	// sees /healthz 200.)
	p.beat.Store(time.Now().UnixNano())
	if p.hooks.Attached != nil {
		p.hooks.Attached(&Pipeline{p: p}, tr)
	}
	if o.ReadyFile != "" {
		if err := writeReadyFile(o.ReadyFile); err != nil {
			return err
		}
	}
	stopped := make(chan struct{})
	defer close(stopped)
	// SIGUSR1 and --interval ask for a summary; the reading loop makes it.
	var wantSummary atomic.Bool
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		var tick <-chan time.Time
		if o.Interval > 0 {
			t := time.NewTicker(o.Interval)
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
	// Housekeeping, in the reading goroutine once a second: periodic
	// reconciliation, namespaces that went away, dumps to apply.
	var wantReconcile, wantWatch atomic.Bool
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		next := time.Now().Add(o.ReconcileEvery)
		for {
			select {
			case now := <-t.C:
				if o.ReconcileEvery > 0 && !now.Before(next) {
					wantReconcile.Store(true)
					next = now.Add(o.ReconcileEvery)
				}
				wantWatch.Store(true)
				tr.Wake()
			case <-stopped:
				return
			}
		}
	}()
	// caughtUp: every transition stamped before k has been read.
	caughtUp := func(k uint64) bool {
		if p.lastK >= k {
			return true
		}
		return tr.Buffered() == 0 && events.Monotonic() >= k
	}
	go func() {
		select {
		case <-sigs:
		case <-ctxDone(ctx):
		case <-stopped:
			return
		}
		tr.Stop()
	}()
	if o.Duration > 0 {
		t := time.AfterFunc(o.Duration, func() { tr.Stop() })
		defer t.Stop()
	}
	if !o.Quiet {
		go watchClosed(os.Stdout, stopped, func() { tr.Stop() })
	}

	summarize := func() error {
		pr, err := p.livePressure()
		if err != nil {
			return err
		}
		return p.summary(time.Now(), pr)
	}
	var (
		rec      events.Record
		nextSync = time.Now().Add(syncInterval)
	)
	var n uint
	for {
		err := tr.Read(&rec)
		// The heartbeat: when woken (at least once a second) and every
		// 256 records, not for each (the clock costs).
		if n++; rec.Woken || n%256 == 0 {
			p.beat.Store(time.Now().UnixNano())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		// DNS answers before the transitions that use them: a connect
		// names its address, an attempt's end checks it.
		if rec.Woken || (rec.Transition.Kind == events.KindTransition && (rec.Transition.Old == tcpstate.SynSent || rec.Transition.New == tcpstate.SynSent)) {
			if err = p.drainDNS(); err != nil {
				return err
			}
		}
		if rec.Woken {
			if wantSummary.Swap(false) && !o.Quiet {
				err = summarize()
			}
			if wantReconcile.Swap(false) {
				p.reconciler.request("interval")
			}
			if wantWatch.Swap(false) {
				p.watchNamespaces()
			}
			if p.recorder != nil {
				// A paused recording tries to resume; a file removed
				// under it pauses it.
				p.recorder.Tick(time.Now())
			}
		} else {
			err = p.event(&rec)
		}
		// Reconciliation is looked after when the ring is empty, when
		// woken, and every 64 records under load (not for each: it is a
		// channel poll).
		empty := tr.Buffered() == 0
		if err == nil && (empty || rec.Woken || n%64 == 0) {
			err = p.pollReconcile(caughtUp)
		}
		if err == nil && empty {
			err = p.flush()
			if err == nil && p.recorder != nil && time.Now().After(nextSync) {
				err = p.recorder.Sync()
				nextSync = time.Now().Add(syncInterval)
			}
		}
		// A write error pauses the recording, never the trace.
		if err == nil && p.recorder != nil {
			err = p.recordingNews()
		}
		if err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}
	if err := p.finish(time.Now(), p.livePressure); err != nil {
		if isBrokenPipe(err) {
			return nil
		}
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
			st.Transitions, o.Write, st.Bytes, st.Files, p.lost, p.skipped, paused)
	case o.Output == "table":
		fmt.Fprintf(os.Stderr, "socktrace: %d transitions shown, %d lost, %d skipped by the kernel\n", p.shown, p.lost, p.skipped)
	}
	return nil
}

// syncInterval: how often a recording is synced to disk, so that a power
// loss costs at most about this much of it.
const syncInterval = 2 * time.Second

// captureHeader describes a recording.
func captureHeader(o *Options, method string, started time.Time, startK uint64) capture.Header {
	host, _ := os.Hostname()
	var u unix.Utsname
	unix.Uname(&u)
	var id [8]byte
	rand.Read(id[:])
	return capture.Header{
		Socktrace: o.Version, Host: host, Kernel: unix.ByteSliceToString(u.Release[:]),
		BootTime: started.Add(-time.Duration(startK)), Started: started,
		Args: os.Args[1:], Filter: o.Describe(), Attach: method,
		Session: binary.LittleEndian.Uint64(id[:]), Netns: o.Netns,
	}
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

// removeReadyFile removes the ready file at path, if there is one (never
// a directory).
func removeReadyFile(path string) error {
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return fmt.Errorf("--ready-file %s: cannot remove the file already there (socktrace writes it once tracing, and removes it at exit): %w", path, err)
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

// gcRoom is the least the collector lets the heap grow between two
// collections while tracing (package gcroom).
const gcRoom = 8 << 20
