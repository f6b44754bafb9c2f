package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/gcroom"
	"github.com/socktrace/socktrace/internal/owner/cgroups"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/netnsname"
	"github.com/socktrace/socktrace/internal/owner/owners"
)

// Trace streams transitions until Ctrl-C, SIGTERM, --duration, or a
// closed stdout.
func Trace(ctx context.Context, o *Options) error { return Run(ctx, o, nil) }

// Run is Trace with hooks for outputs that are not streams (the agent's
// metrics); hooks may be nil. It reads as the run goes: open the live
// source, set the pipeline up, merge the snapshot, say we are ready,
// then consume records until the end.
func Run(ctx context.Context, o *Options, hooks *Hooks) error {
	// A closed stdout (socktrace | head) must end us quietly, not kill us.
	signal.Ignore(syscall.SIGPIPE)
	release, err := claimReadyFile(o.ReadyFile)
	if err != nil {
		return err
	}
	defer release()
	// The owners' iterator (for the snapshot, reconciliation, listeners)
	// loads while the tracer's programs do.
	owners.Preload()
	// Loading the programs decodes the kernel's BTF: garbage that, at
	// the default percentage, made the start the agent's highest
	// resident memory (gcroom.Tight).
	loose := gcroom.Tight(loadGC)
	src, err := openLive(o)
	loose()
	if err != nil {
		return err
	}
	defer src.tr.Close()
	// At full churn the tracer allocates a row a socket into a small live
	// heap: without room, the collector would run every few MiB allocated
	// (see gcroom).
	defer gcroom.Keep(gcRoom)()
	p := newLivePipeline(o, src, hooks)
	defer p.close()
	if err := p.startRecording(o, src.tr); err != nil {
		return err
	}
	p.startFlight(o, src.tr)
	if err := p.mergeLiveSnapshot(o, src.tr.Method()); err != nil {
		return unlessOutputClosed(err)
	}
	if err := p.startListening(o, src.wakes.nudge); err != nil {
		return unlessOutputClosed(err)
	}
	defer p.listenStop()
	defer src.catchSignals()()
	if err := p.announceReady(o, src.tr); err != nil {
		return err
	}
	// Loading the programs (the kernel's BTF) and the socket list
	// allocated tens of MiB that are garbage now: give them back to the
	// kernel at once rather than over minutes (the scavenger's pace).
	debug.FreeOSMemory()
	defer src.start(ctx)()
	return p.consume(src)
}

// claimReadyFile removes a ready file left behind (by a run killed with
// -9, or anything else): one says a socktrace runs and traces. Ours is
// written once we trace (announceReady) and goes when release is called.
func claimReadyFile(path string) (release func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	if err := removeReadyFile(path); err != nil {
		return nil, err
	}
	return func() { removeReadyFile(path) }, nil
}

// close ends what a live pipeline opened: the capture file of -w and
// passive DNS.
func (p *pipeline) close() {
	if p.recorder != nil {
		p.recorder.Close()
	}
	if p.flight != nil {
		p.flight.Close() // (the recordings the end did not finish: an error ended the run)
	}
	p.dns.close()
	p.nat.Close()
}

// newLivePipeline is a pipeline for records from the kernel: owners
// resolved on this host, namespaces named, passive DNS, reconciliation.
func newLivePipeline(o *Options, src *liveSource, hooks *Hooks) *pipeline {
	p := newPipeline(o, time.Now(), events.Monotonic())
	p.ring = src.tr.Ring
	p.ids = identity.NewResolver(o.HostRoot, o.KubeletLogDir, o.CRISocket)
	p.netnsName = netnsname.New(o.HostRoot, p.ids).Name
	p.w.SetNetnsNames(p.netnsName)
	p.quiet = o.Quiet
	p.dns = openDNS(o, cgroups.New(o.HostRoot).Mount(), src.tr.Clock())
	p.nat = openNAT(o)
	if hooks != nil {
		p.hooks = hooks
	}
	p.reconciler = newReconciler(o, src.wakes.nudge)
	if src.tr.DropReasons() != events.DropsOff {
		var err error
		if p.dropNames, err = drops.NewNamer(src.tr.DropReasons(), src.tr.KernelTypes()); err != nil {
			fmt.Fprintf(os.Stderr, "socktrace: %v: drops are shown without their reason\n", err)
		}
	}
	return p
}

// startRecording creates the capture file of -w, if asked for.
func (p *pipeline) startRecording(o *Options, tr *events.Tracer) error {
	if o.Write == "" {
		return nil
	}
	var err error
	if p.recorder, err = capture.Create(o.Write, captureHeader(o, tr.Method(), p.started, p.startK), o.Capture); err != nil {
		return err
	}
	p.recState = RecordingState{File: o.Write}
	return nil
}

// mergeLiveSnapshot takes the snapshot and merges it. The program is
// attached before, so nothing that happens meanwhile is missed; the
// timeline sorts out overlaps. A table first says that tracing is on.
func (p *pipeline) mergeLiveSnapshot(o *Options, method string) error {
	if o.Output == "table" && !o.Quiet {
		fmt.Fprintf(os.Stderr, "socktrace: tracing TCP state transitions (%s); Ctrl-C to stop\n", method)
	}
	if !o.Snapshot {
		return nil
	}
	s, err := takeSnap(o)
	if err != nil {
		return err
	}
	if err := p.mergeSnapshot(s); err == nil {
		err = p.flush()
	}
	if err == nil && p.recorder != nil {
		err = p.recordingNews()
	}
	return outputErr(err)
}

// announceReady says the run is healthy from here: every hook attached
// (events.Open attaches the transitions' program last), passive DNS
// too, the snapshot merged, about to read. The hooks hear it before the
// ready file appears, so whoever waits for the file sees /healthz 200.
func (p *pipeline) announceReady(o *Options, tr *events.Tracer) error {
	p.beat.Store(time.Now().UnixNano())
	if p.hooks.Attached != nil {
		p.hooks.Attached(&View{p: p}, tr)
	}
	if o.ReadyFile != "" {
		return writeReadyFile(o.ReadyFile)
	}
	return nil
}

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

// loadGC is the collector's percentage while the programs load: 50
// keeps the start-up peak about 5 MiB lower than the default's 100, for
// a few milliseconds of collection.
const loadGC = 50

// gcRoom is the least the collector lets the heap grow between two
// collections while tracing (package gcroom).
const gcRoom = 8 << 20
