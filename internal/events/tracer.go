package events

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/socktrace/socktrace/internal/kernelbtf"
	"github.com/socktrace/socktrace/internal/kernelver"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// KernelFilter is the part of the filter the BPF program applies, so that
// unwanted transitions never reach user space.
type KernelFilter struct {
	States tcpstate.Mask // keep transitions into or out of these states; 0 keeps all
	Netns  uint32        // network namespace inode; 0 keeps all
	IPv4   bool          // with IPv6: the families to keep; neither keeps both
	IPv6   bool
	SPorts []PortRange // local ports; empty keeps all
	DPorts []PortRange // remote ports; empty keeps all
}

// MaxPortRanges is how many port ranges the BPF program can test. A filter
// with more ranges is left to user space.
const MaxPortRanges = 16

// Attach methods, in the order Open tries them.
const (
	AttachAuto       = "auto"
	AttachTpBtf      = "tp_btf"
	AttachRawTp      = "raw_tp"
	AttachTracepoint = "tracepoint"
)

// AttachMethods lists the values Options.Attach accepts.
var AttachMethods = []string{AttachAuto, AttachTpBtf, AttachRawTp, AttachTracepoint}

// Options configure Open.
type Options struct {
	Filter KernelFilter
	// RingSize is the ring buffer's size in bytes: a power of two and a
	// multiple of the page size. 0 means DefaultRingSize.
	RingSize int
	// Attach picks how to attach (AttachAuto: the best the kernel has).
	Attach string
	// KernelBTF is a BTF file for the running kernel, for kernels that do
	// not expose /sys/kernel/btf/vmlinux. Empty: the kernel's own.
	KernelBTF string
	// Kinds: records to send besides transitions (a retransmit, reset or
	// error of a socket), each passing the same filter as transitions.
	// They are always counted on the socket and its destination.
	Kinds Kinds
	// DropTuples: also send a SYN or SYN-ACK dropped on this host of no
	// socket the kernel knew (a KindDrop record without a socket, see
	// Transition.IsTupleDrop), for user space to give to the connect
	// attempt of its 4-tuple; not those dropped for want of a socket
	// (NO_SOCKET; before 5.17, those freed in tcp_v4_rcv or tcp_v6_rcv,
	// found in /proc/kallsyms).
	DropTuples bool
	// MaxSockets: how many sockets the kernel side follows at once (its
	// LRU socket map); 0 means DefaultMaxSockets. Beyond, the least
	// recently active socket's owner, birth time and counters are
	// forgotten: its later transitions come without them (user space
	// counts it, see timeline.Stats.KernelForgot).
	MaxSockets int
}

// DefaultMaxSockets is the size of the kernel's socket map.
const DefaultMaxSockets = 131072

// DefaultRingSize holds about 41,000 transitions (192 bytes each, and
// the ring's 8-byte header).
const DefaultRingSize = 8 << 20

// Tracer reads TCP state transitions from the kernel.
type Tracer struct {
	method string
	prog   *ebpf.Program
	maps   tracerMaps
	link   link.Link
	rd     *ring
	dec    *Decoder
	clock  *Clock

	lostVals  []uint64
	lostSeen  uint64
	nextCheck time.Time
	nextSync  time.Time
	sinceChk  int
	batch     int       // records read since the ring was last empty
	now       time.Time // the clock as last read (see clockEvery)
	deadline  time.Time // the ring reader's, as last set
	// batchBytes: bytes of the records read since cycleStart, when the
	// tracer last paused (or woke up idle): the rate that sizes the next
	// pause.
	batchBytes int
	cycleStart time.Time
	cycleSet   bool // cycleStart is a pause's start, not yet a wake-up's
	// peak: the most the ring held when a batch of reads began (the
	// batch's first record included), in bytes.
	peak atomic.Int64
	// skippedSeen: the program's recursion misses already reported.
	skippedSeen   uint64
	lostOtherSeen uint64
	// kernelTypes: --kernel-btf's, nil for the running kernel's.
	kernelTypes *btf.Spec
	// dropArgs: the argument count of the kfree_skb tracepoint the drop
	// hook was attached for; 0 if not attached.
	dropArgs int
	// The optional hooks (retransmits, resets, errors).
	hookProgs  []*ebpf.Program
	hookLinks  []link.Link
	hookStatus []HookStatus
	// The primary program's backup, if attached, or why not.
	backupProg *ebpf.Program
	backupLink link.Link
	backupErr  error
	rescued    []uint64 // per-CPU read buffer

	stopping atomic.Bool // Stop was called
	stopOnce sync.Once
	stopErr  error
	done     bool
	wake     atomic.Bool // set by Wake
}

type tracerMaps struct {
	Events        *ebpf.Map `ebpf:"events"`
	Lost          *ebpf.Map `ebpf:"lost"`
	Socks         *ebpf.Map `ebpf:"socks"`
	Listeners     *ebpf.Map `ebpf:"listeners"`
	Held          *ebpf.Map `ebpf:"held"`
	Dests         *ebpf.Map `ebpf:"dests"`
	DestsOverflow *ebpf.Map `ebpf:"dests_overflow"`
	Synacks       *ebpf.Map `ebpf:"synacks"`
	Running       *ebpf.Map `ebpf:"running"`
	Rescued       *ebpf.Map `ebpf:"rescued"`
	DropsOther    *ebpf.Map `ebpf:"drops_other"`
	DropsNosock   *ebpf.Map `ebpf:"drops_nosock"`
	DropDests     *ebpf.Map `ebpf:"drop_dests"`
	DropDestsOver *ebpf.Map `ebpf:"drop_dests_overflow"`
}

type tracerObjects struct {
	Prog *ebpf.Program `ebpf:"prog"`
	tracerMaps
}

// candidate is one way to attach: a program and its attach function.
type candidate struct {
	method string // as shown to users
	mode   string // the Attach option that selects it
	prog   string
	backup string // its backup program (see bpf/backup.h), "" if none
	attach func(*ebpf.Program) (link.Link, error)
}

func attachRawTp(p *ebpf.Program) (link.Link, error) {
	return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "inet_sock_set_state", Program: p})
}

var candidates = []candidate{
	{"tp_btf (socket cookie from bpf_get_socket_cookie)", AttachTpBtf, "tp_btf_cookie", "tp_btf_cookie_backup", attachTracing},
	{"tp_btf (socket cookie read from the socket)", AttachTpBtf, "tp_btf_core", "tp_btf_core_backup", attachTracing},
	{"raw_tracepoint", AttachRawTp, "raw_tp", "raw_tp_backup", attachRawTp},
	{"tracepoint sock:inet_sock_set_state", AttachTracepoint, "tracepoint", "", func(p *ebpf.Program) (link.Link, error) {
		return link.Tracepoint("sock", "inet_sock_set_state", p, nil)
	}},
}

func attachTracing(p *ebpf.Program) (link.Link, error) {
	return link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
}

// Open checks that the kernel and the privileges allow tracing, loads the
// BPF program and attaches it. The returned Tracer must be closed.
func Open(opts Options) (*Tracer, error) {
	if opts.Attach == "" {
		opts.Attach = AttachAuto
	}
	if !validAttach(opts.Attach) {
		return nil, fmt.Errorf("unknown attach method %q: use one of %s", opts.Attach, strings.Join(AttachMethods, ", "))
	}
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise the locked-memory limit for BPF maps: %w", err)
	}
	kernelTypes, err := kernelBTF(opts.KernelBTF)
	if err != nil {
		return nil, err
	}
	if kernelTypes == nil {
		// Parsed while the BPF object is read and the kernel probed.
		go kernelbtf.Spec()
	}
	if err := checkRingBuf(); err != nil {
		return nil, err
	}

	spec, err := loadSocktrace()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	ringSize := opts.RingSize
	if ringSize == 0 {
		ringSize = DefaultRingSize
	}
	if err := checkRingSize(ringSize); err != nil {
		return nil, err
	}
	spec.Maps["events"].MaxEntries = uint32(ringSize)
	if opts.MaxSockets < 0 || opts.MaxSockets > 1<<24 {
		return nil, fmt.Errorf("bad kernel socket map size %d: want 1 to %d", opts.MaxSockets, 1<<24)
	}
	if opts.MaxSockets > 0 {
		spec.Maps["socks"].MaxEntries = uint32(opts.MaxSockets)
	}
	kc := kernelConfig(opts.Filter)
	kc.Kinds = uint8(opts.Kinds)
	kc.DropConsumed, kc.DropNoSocket, kc.DropPurge = dropReasonValues(kernelTypes)
	if opts.DropTuples {
		kc.DropTuples = 1
		if kc.DropNoSocket == ^uint32(0) {
			kc.DropQuietLo, kc.DropQuietHi = quietLocations()
		}
	}
	if err := spec.Variables["cfg"].Set(kc); err != nil {
		return nil, fmt.Errorf("set BPF filter: %w", err)
	}

	var failures []string
	var firstHard error
	helperErr := HaveCookieHelper(kernelTypes)
	for _, c := range candidates {
		if opts.Attach != AttachAuto && opts.Attach != c.mode {
			continue
		}
		if c.prog == "tp_btf_cookie" && errors.Is(helperErr, ebpf.ErrNotSupported) {
			// Known not to load: say why rather than show a verifier log.
			failures = append(failures, fmt.Sprintf("%s: %v", c.method, helperErr))
			continue
		}
		t, err := tryCandidate(spec, c, kernelTypes)
		if err == nil {
			t.kernelTypes = kernelTypes
			return t, nil
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, privilegeError(err)
		}
		if firstHard == nil {
			var ve *ebpf.VerifierError
			if errors.As(err, &ve) {
				firstHard = err
			}
		}
		failures = append(failures, fmt.Sprintf("%s: %v", c.method, summarize(err)))
	}
	return nil, attachError(failures, firstHard)
}

func validAttach(a string) bool {
	for _, m := range AttachMethods {
		if a == m {
			return true
		}
	}
	return false
}

func tryCandidate(spec *ebpf.CollectionSpec, c candidate, kernelTypes *btf.Spec) (*Tracer, error) {
	s := specOf(spec, c.prog, "prog")
	var objs tracerObjects
	opts, err := kernelbtf.Options(kernelTypes)
	if err != nil {
		return nil, err
	}
	opts.Programs.LogSizeStart = 1 << 20
	if err := s.LoadAndAssign(&objs, opts); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	rd, err := newRing(objs.Events)
	if err != nil {
		objs.Prog.Close()
		closeMaps(objs.tracerMaps)
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	t := &Tracer{
		method:   c.method,
		prog:     objs.Prog,
		maps:     objs.tracerMaps,
		rd:       rd,
		dec:      NewDecoder(),
		clock:    NewClock(),
		lostVals: make([]uint64, mustPossibleCPUs()),
	}
	// The retransmit, reset and error hooks first, then the program that
	// sends transitions: every transition it sends has had them counting
	// (attached after it, the closes of the first few hundred
	// milliseconds said rst_received false after an RST).
	// The backup is loaded while the hooks are (see attachHooks).
	backup := t.loadBackup(spec, c, kernelTypes)
	t.attachHooks(spec, kernelTypes, c.mode == AttachTpBtf)
	if t.link, err = c.attach(objs.Prog); err != nil {
		if b := <-backup; b != nil {
			b.Close()
		}
		t.closeHooks()
		rd.close()
		objs.Prog.Close()
		closeMaps(objs.tracerMaps)
		return nil, fmt.Errorf("attach: %w", err)
	}
	// The backup goes after the primary: the kernel runs the programs of
	// a tracepoint in the order they were attached.
	t.attachBackup(<-backup, c)
	now := time.Now()
	t.nextCheck, t.nextSync = now.Add(lostCheckInterval), now.Add(clockSyncInterval)
	return t, nil
}

// closeHooks detaches and frees the optional hooks.
func (t *Tracer) closeHooks() {
	for _, l := range t.hookLinks {
		l.Close()
	}
	for _, p := range t.hookProgs {
		p.Close()
	}
	t.hookLinks, t.hookProgs, t.hookStatus = nil, nil, nil
}

// attachBackup attaches the primary program's backup, which handles the
// transitions the kernel skips the primary for (see bpf/backup.h),
// where the kernel has the recursion guard that makes it skip: 6.1 and
// later (before, a nested run re-enters the primary, and a backup would
// send the same transition twice).
func (t *Tracer) attachBackup(p *ebpf.Program, c candidate) {
	if p == nil {
		return // t.backupErr says why
	}
	l, err := c.attach(p)
	if err != nil {
		p.Close()
		t.backupErr = fmt.Errorf("attach the backup program: attach: %w", err)
		return
	}
	t.backupProg, t.backupLink = p, l
}

// loadBackup loads the primary program's backup in the background, if
// it has one and the kernel needs it; the channel gives it, or nil with
// t.backupErr set.
func (t *Tracer) loadBackup(spec *ebpf.CollectionSpec, c candidate, kernelTypes *btf.Spec) <-chan *ebpf.Program {
	out := make(chan *ebpf.Program, 1)
	switch {
	case c.backup == "":
		t.backupErr = fmt.Errorf("%s has no backup program", c.method)
		out <- nil
		return out
	case !kernelver.AtLeast(6, 1):
		t.backupErr = fmt.Errorf("the kernel runs a nested transition's program itself (no recursion guard before Linux 6.1): no backup needed")
		out <- nil
		return out
	}
	maps := t.sharedMaps()
	go func() {
		p, err := loadProg(spec, c.backup, maps, kernelTypes)
		if err != nil {
			t.backupErr = fmt.Errorf("attach the backup program: %w", err)
		}
		out <- p
	}()
	return out
}

// Backup says whether a backup program covers the transitions the
// kernel skips the primary for, and if not, why.
func (t *Tracer) Backup() (bool, error) { return t.backupProg != nil, t.backupErr }

// RecursionMisses are the kernel's counts of the runs it skipped, of the
// primary program and of its backup (0 without one).
func (t *Tracer) RecursionMisses() (primary, backup uint64) {
	if st, err := t.prog.Stats(); err == nil {
		primary = st.RecursionMisses
	}
	if t.backupProg != nil {
		if st, err := t.backupProg.Stats(); err == nil {
			backup = st.RecursionMisses
		}
	}
	return primary, backup
}

func closeMaps(m tracerMaps) {
	for _, x := range []*ebpf.Map{m.Events, m.Lost, m.Socks, m.Listeners, m.Held, m.Dests, m.DestsOverflow, m.Synacks, m.Running, m.Rescued, m.DropsOther, m.DropsNosock, m.DropDests, m.DropDestsOver} {
		if x != nil {
			x.Close()
		}
	}
}

func mustPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func kernelConfig(f KernelFilter) socktraceConfig {
	var c socktraceConfig
	c.StateMask = uint32(f.States)
	if f.States == 0 {
		c.StateMask = ^uint32(0)
	}
	c.Netns = f.Netns
	c.WantInet, c.WantInet6 = 1, 1
	if f.IPv4 != f.IPv6 {
		c.WantInet, c.WantInet6 = b2u(f.IPv4), b2u(f.IPv6)
	}
	if len(f.SPorts) <= MaxPortRanges {
		c.NrSport = uint8(len(f.SPorts))
		for i, r := range f.SPorts {
			c.Sport[i].Lo, c.Sport[i].Hi = r.Lo, r.Hi
		}
	}
	if len(f.DPorts) <= MaxPortRanges {
		c.NrDport = uint8(len(f.DPorts))
		for i, r := range f.DPorts {
			c.Dport[i].Lo, c.Dport[i].Hi = r.Lo, r.Hi
		}
	}
	return c
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func checkRingSize(n int) error {
	page := os.Getpagesize()
	if n < page || n&(n-1) != 0 {
		return fmt.Errorf("ring buffer size %d: must be a power of two and at least the page size (%d)", n, page)
	}
	return nil
}

// Method says how the program is attached, e.g. "tp_btf (...)".
func (t *Tracer) Method() string { return t.method }

// Clock is the tracer's monotonic-to-wall clock converter.
func (t *Tracer) Clock() *Clock { return t.clock }

const (
	// A batch of at least batchMin records read back to back means a
	// busy tracer: it pauses before waiting for more, so that one wake-up
	// and one output write serve many records. The pause is maxPause, or
	// less where the rate just seen would fill more than a quarter of the
	// ring in that time (none below minPause). A longer pause serves more
	// records a wake-up, and so costs less CPU a transition (the figures
	// behind maxPause are in bench/README.md).
	batchMin = 2
	maxPause = 20 * time.Millisecond
	minPause = 200 * time.Microsecond

	// clockEvery: records read back to back between two reads of the
	// clock; even at the highest rates, a timestamp is then only a
	// fraction of a millisecond old.
	clockEvery = 32

	lostCheckInterval = 200 * time.Millisecond
	lostCheckEvery    = 4096
	clockSyncInterval = 10 * time.Second
)

// Read waits for the next transition or packet event, for news of lost
// ones, or for a Wake, and fills r (its Type says which). After Stop,
// it returns what is still in the ring buffer, then a final count of
// lost transitions if any, then io.EOF.
func (t *Tracer) Read(r *Record) error {
	for {
		if t.done {
			return io.EOF
		}
		// The clock is read as a batch begins (after a wait) and every
		// clockEvery records of it: read for every record, it was a
		// large share of the whole path's CPU.
		if t.batch <= 1 || t.batch%clockEvery == 0 {
			t.now = time.Now()
		}
		now := t.now
		if t.wake.Load() && t.wake.Swap(false) {
			*r = Record{Type: WakeRecord}
			return nil
		}
		if t.sinceChk >= lostCheckEvery || !now.Before(t.nextCheck) {
			t.sinceChk = 0
			t.nextCheck = now.Add(lostCheckInterval)
			if !now.Before(t.nextSync) {
				t.clock.Sync()
				t.nextSync = now.Add(clockSyncInterval)
			}
			if n, err := t.newlyLost(); err != nil {
				return err
			} else if n > 0 {
				*r = Record{Type: LossRecord, Loss: Loss{At: now, Lost: n}}
				return nil
			}
			if n := t.newlySkipped(); n > 0 {
				*r = Record{Type: LossRecord, Loss: Loss{At: now, Skipped: n}}
				return nil
			}
			if n := t.newlyLostOther(); n > 0 {
				*r = Record{Type: LossRecord, Loss: Loss{At: now, LostOther: n}}
				return nil
			}
		}
		// Under load, let the ring fill a little before waiting on it:
		// one wakeup and one output write then serve a batch, not a
		// record, at the cost of at most maxPause of latency. An idle
		// tracer blocks at once. (What the last read left in the ring is
		// there still: only a read takes from it.)
		if t.batch > 0 && t.rd.remaining == 0 && t.rd.available() == 0 {
			now = time.Now()
			t.now = now
			pause := time.Duration(0)
			if t.batch >= batchMin && !t.stopping.Load() {
				pause = t.pause(now)
			}
			t.batch, t.batchBytes = 0, 0
			t.cycleSet = pause > 0
			if pause > 0 {
				t.cycleStart = now
				time.Sleep(pause)
				continue
			}
		}
		if t.deadline != t.nextCheck {
			t.deadline = t.nextCheck
			t.rd.deadline = t.nextCheck
		}
		sample, err := t.rd.read()
		switch {
		case err == nil:
			if t.batch == 0 {
				if !t.cycleSet {
					t.cycleStart = time.Now() // woken up after idling
				}
				if n := int64(t.rd.remaining + len(sample) + ringHeaderSize); n > t.peak.Load() {
					t.peak.Store(n)
				}
			}
			t.cycleSet = false
			t.sinceChk++
			t.batch++
			t.batchBytes += len(sample) + ringHeaderSize
			err := t.dec.Decode(sample, &r.Transition)
			t.rd.release() // decoded: the room is the kernel's again
			if err != nil {
				return err
			}
			r.Type, r.Loss = typeOf(r.Kind), Loss{}
			r.Time = t.clock.Wall(r.Ktime)
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err == errRingFlushed:
			// Stopped and drained: one last look at the loss counters.
			t.done = true
			n, lerr := t.newlyLost()
			skipped := t.newlySkipped()
			if (lerr != nil || n == 0) && skipped == 0 {
				return io.EOF
			}
			*r = Record{Type: LossRecord, Loss: Loss{At: time.Now(), Lost: n, Skipped: skipped}}
			if lerr != nil {
				r.Loss.Lost = 0
			}
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// pause returns how long a busy tracer that just emptied its ring waits
// before reading again: maxPause, or as long as the rate of the cycle
// that ends now (records since cycleStart) takes to fill a quarter of
// the ring; 0 below minPause.
func (t *Tracer) pause(now time.Time) time.Duration {
	cycle := now.Sub(t.cycleStart)
	if cycle <= 0 || t.batchBytes == 0 {
		return maxPause
	}
	quarter := float64(t.rd.size) / 4
	rate := float64(t.batchBytes) / cycle.Seconds() // bytes a second
	p := time.Duration(quarter / rate * float64(time.Second))
	switch {
	case p > maxPause:
		return maxPause
	case p < minPause:
		return 0
	}
	return p
}

// newlySkipped returns how many transitions no program ran for since it
// last looked (0 where the kernel does not say): the primary's recursion
// misses, less those its backup handled.
func (t *Tracer) newlySkipped() uint64 {
	st, err := t.prog.Stats()
	if err != nil {
		return 0
	}
	missed := st.RecursionMisses
	if t.rescued == nil {
		t.rescued = make([]uint64, len(t.lostVals))
	}
	if rescued, ok := t.rescuedTotal(t.rescued); ok {
		if rescued > missed {
			return 0 // read between a miss and its rescue being counted
		}
		missed -= rescued
	}
	if missed < t.skippedSeen {
		return 0
	}
	n := missed - t.skippedSeen
	t.skippedSeen = missed
	return n
}

// rescuedTotal is how many transitions the backup program handled, summed
// over the CPUs (buf: one slot a CPU).
func (t *Tracer) rescuedTotal(buf []uint64) (uint64, bool) {
	if t.backupProg == nil || t.maps.Rescued == nil {
		return 0, false
	}
	if err := t.maps.Rescued.Lookup(uint32(0), &buf); err != nil {
		return 0, false
	}
	var n uint64
	for _, v := range buf {
		n += v
	}
	return n, true
}

// Rescued is how many transitions the backup program handled that the
// kernel skipped the primary for. Safe to call from any goroutine.
func (t *Tracer) Rescued() uint64 {
	n, _ := t.rescuedTotal(make([]uint64, len(t.lostVals)))
	return n
}

// newlyLostOther returns how many records of other kinds were lost
// since it last looked.
func (t *Tracer) newlyLostOther() uint64 {
	if t.maps.Lost.Lookup(uint32(1), &t.lostVals) != nil {
		return 0
	}
	var total uint64
	for _, v := range t.lostVals {
		total += v
	}
	n := total - t.lostOtherSeen
	t.lostOtherSeen = total
	return n
}

// newlyLost returns how many transitions were lost since it last looked.
func (t *Tracer) newlyLost() (uint64, error) {
	total, err := t.LostTotal()
	if err != nil {
		return 0, err
	}
	n := total - t.lostSeen
	t.lostSeen = total
	return n, nil
}

// LostTotal returns how many transitions were lost since Open.
func (t *Tracer) LostTotal() (uint64, error) {
	if err := t.maps.Lost.Lookup(uint32(0), &t.lostVals); err != nil {
		return 0, fmt.Errorf("read lost-event counter: %w", err)
	}
	var total uint64
	for _, v := range t.lostVals {
		total += v
	}
	return total, nil
}

// Wake makes Read return a WakeRecord within lostCheckInterval, so
// that the reading goroutine can do other work (print a summary). It may
// be called from any goroutine.
func (t *Tracer) Wake() { t.wake.Store(true) }

// Stop detaches the program, so no new transitions arrive, and makes
// Read return what is left, then io.EOF. It may be called from any
// goroutine, more than once.
func (t *Tracer) Stop() error {
	t.stopOnce.Do(func() {
		t.stopping.Store(true)
		if err := t.link.Close(); err != nil {
			t.stopErr = fmt.Errorf("detach: %w", err)
		}
		if t.backupLink != nil {
			t.backupLink.Close()
		}
		for _, l := range t.hookLinks {
			l.Close()
		}
		if err := t.rd.flush(); err != nil && t.stopErr == nil {
			t.stopErr = fmt.Errorf("flush ring buffer: %w", err)
		}
	})
	return t.stopErr
}

// Close stops the tracer and frees its kernel objects. Read must not be
// running.
func (t *Tracer) Close() error {
	err := t.Stop()
	t.rd.close()
	t.prog.Close()
	if t.backupProg != nil {
		t.backupProg.Close()
	}
	for _, p := range t.hookProgs {
		p.Close()
	}
	closeMaps(t.maps)
	return err
}

// Buffered returns how many bytes wait in the ring buffer: when it is 0,
// the next Read will block, so it is time to flush output.
func (t *Tracer) Buffered() int {
	if n := t.rd.remaining; n > 0 {
		return n // as the last read left it: only a read takes from it
	}
	return t.rd.available()
}

// Ring returns the ring buffer's size and the most it has held so far
// (bytes, records' headers included), measured when each batch of reads
// began: how close a burst came to losing transitions.
func (t *Tracer) Ring() (size, peak int) { return t.rd.size, int(t.peak.Load()) }
