// Package metrics exposes a running trace as Prometheus metrics: connect
// attempts by destination and outcome (counted in the kernel, so exact
// under overload), failing destinations, handshake times, live sockets by
// state (exact after each reconciliation with the kernel), CLOSE-WAIT
// leaks, full listeners, and socktrace's own health: transitions seen,
// lost and skipped, reconciliations. Label sets stay bounded: at most
// Options.MaxDestinations destinations, the least recently active folded
// into daddr="other", and those quiet for Options.ForgetAfter dropped.
package metrics

import (
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Options bound the metrics' label sets.
type Options struct {
	MaxDestinations int           // destination label sets kept (default 1000)
	ForgetAfter     time.Duration // a destination quiet this long disappears (default 15m)
	Version         string        // socktrace's, for socktrace_build_info
	// WorkloadLabels: the metrics by destination and by owner also get
	// namespace, pod, container and unit labels (the owner's identity;
	// "" when not known or not applicable). Label sets stay within
	// MaxDestinations all the same.
	WorkloadLabels bool
}

// Defaults for Options.
const (
	DefaultMaxDestinations = 1000
	DefaultForgetAfter     = 15 * time.Minute
)

// HandshakeBuckets are the connect_duration_seconds buckets: loopback
// handshakes take tens of microseconds, a SYN retransmitted takes 1 s.
var HandshakeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// descs are the metrics' descriptions, which depend on Options.
type descs struct {
	attempts, synRetrans, retrans, resets, bytes, failing, streak, duration, sockets, closeWait, queueFull, transitions, lost, skipped, reconciled, reconciles, folded, untracked, build, up, misses, rescued *prometheus.Desc
	// Passive DNS.
	staleDNS, dnsAnswers, dnsEvicted, dnsLookups *prometheus.Desc
	kernelForgot, cgroupsUncached                *prometheus.Desc
	// The recording (-w).
	recErrors, recPaused *prometheus.Desc
}

// newDescs makes the metrics' descriptions; with workload, the metrics
// by destination and by owner also carry namespace, pod, container and
// unit labels.
func newDescs(workload bool) *descs {
	labels := func(l []string) []string {
		if workload {
			return append(l, workloadLabels...)
		}
		return l
	}
	d := &descs{}
	d.attempts = prometheus.NewDesc("socktrace_connect_attempts_total",
		"Connect attempts (active opens) that ended, by destination, owning process and outcome (established, refused, timeout, unreachable, aborted); counted in the kernel, exact when transitions are lost.",
		labels([]string{"daddr", "dport", "netns", "comm", "outcome"}), nil)
	d.synRetrans = prometheus.NewDesc("socktrace_syn_retransmits_total",
		"SYN retransmissions tried by connect attempts to this destination (no answer to the first), also those a firewall dropped on the way out: counted in the kernel.",
		labels([]string{"daddr", "dport", "netns", "comm"}), nil)
	d.retrans = prometheus.NewDesc("socktrace_retransmits_total",
		"Data segments retransmitted by connections to this destination: counted in the kernel.",
		labels([]string{"daddr", "dport", "netns", "comm"}), nil)
	d.resets = prometheus.NewDesc("socktrace_resets_total",
		"RSTs sent and received on connections (and connect attempts) to this destination: counted in the kernel.",
		labels([]string{"daddr", "dport", "netns", "comm", "direction"}), nil)
	d.bytes = prometheus.NewDesc("socktrace_bytes_total",
		"Data bytes sent (and acknowledged) and received by connections to this destination that closed (the SYN and FINs are not data): counted in the kernel.",
		labels([]string{"daddr", "dport", "netns", "comm", "direction"}), nil)
	d.failing = prometheus.NewDesc("socktrace_destination_failing",
		"1 while a destination's connects keep failing (--fail-after in a row), 0 after it recovered.",
		labels([]string{"daddr", "dport", "netns", "comm"}), nil)
	d.streak = prometheus.NewDesc("socktrace_destination_failure_streak",
		"Connect attempts in a row that failed, to this destination, up to the last one that ended.",
		labels([]string{"daddr", "dport", "netns", "comm"}), nil)
	d.duration = prometheus.NewDesc("socktrace_connect_duration_seconds",
		"Handshake time of the connects that were established (syn-sent to established).",
		[]string{"daddr", "dport", "netns"}, nil)
	d.sockets = prometheus.NewDesc("socktrace_sockets",
		"Live TCP sockets by ss state, exact after each reconciliation with the kernel (sock_diag).",
		[]string{"state"}, nil)
	d.closeWait = prometheus.NewDesc("socktrace_close_wait_sockets",
		"Sockets in CLOSE-WAIT for longer than --close-wait-after (the peer closed, the application did not), by owning process.",
		labels([]string{"comm"}), nil)
	d.queueFull = prometheus.NewDesc("socktrace_listen_queue_full",
		"1 when a listener's accept queue is full (new connections are dropped), 0 when it is under pressure but not full.",
		labels([]string{"sport", "comm"}), nil)
	d.transitions = prometheus.NewDesc("socktrace_transitions_total",
		"TCP state transitions received from the kernel.", nil, nil)
	d.lost = prometheus.NewDesc("socktrace_transitions_lost_total",
		"Transitions lost because the ring buffer was full (raise --ring-size); reconciliation repairs the live tables.", nil, nil)
	d.skipped = prometheus.NewDesc("socktrace_transitions_skipped_total",
		"State changes the kernel did not run socktrace's program for (it was already running on that CPU).", nil, nil)
	d.reconciled = prometheus.NewDesc("socktrace_reconciled_sockets_total",
		"Sockets corrected by reconciliation with the kernel: closed (their close was not seen), added (their birth was not seen), changed (state moved unseen).",
		[]string{"kind"}, nil)
	d.reconciles = prometheus.NewDesc("socktrace_reconciliations_total",
		"Reconciliations of the live table with the kernel.", nil, nil)
	d.folded = prometheus.NewDesc("socktrace_destinations_folded_total",
		"Destination label sets folded into daddr=\"other\" to stay within --max-destinations.", nil, nil)
	d.untracked = prometheus.NewDesc("socktrace_sockets_untracked_total",
		"Sockets not remembered because the live table was full (--max-sockets).", nil, nil)
	d.kernelForgot = prometheus.NewDesc("socktrace_bpf_sockets_forgotten_total",
		"Transitions of sockets born during the trace that came without the kernel's memory of them: its socket map (--bpf-max-sockets, an LRU) was full and dropped the least recently active.", nil, nil)
	d.cgroupsUncached = prometheus.NewDesc("socktrace_cgroups_uncached",
		"Cgroups the last walk of the cgroup2 tree found but did not cache (more than 65,536, or 16 MiB of paths): their owners have no identity.", nil, nil)
	d.misses = prometheus.NewDesc("socktrace_bpf_recursion_misses_total",
		"Runs of socktrace's state-transition programs the kernel skipped because the program was already running on that CPU (a nested transition), by program: the primary, and the backup that sends what the primary is skipped for.",
		[]string{"program"}, nil)
	d.rescued = prometheus.NewDesc("socktrace_transitions_rescued_total",
		"Nested transitions the kernel skipped the primary program for and the backup program sent (socktrace_transitions_skipped_total counts those both missed).", nil, nil)
	d.staleDNS = prometheus.NewDesc("socktrace_stale_dns_destinations",
		"Destinations whose last attempt went to an address the DNS name it came from no longer resolves to (a stale-dns alert was raised and no connect succeeded since).", nil, nil)
	d.dnsAnswers = prometheus.NewDesc("socktrace_dns_answers_total",
		"DNS answers seen delivered to local sockets, by result: taken (parsed and kept), malformed (not an answer to an A/AAAA question, or not DNS), lost (the kernel dropped them: their ring buffer was full).",
		[]string{"result"}, nil)
	d.dnsEvicted = prometheus.NewDesc("socktrace_dns_cache_evictions_total",
		"Addresses and names forgotten to keep the DNS map within its bounds.", []string{"what"}, nil)
	d.dnsLookups = prometheus.NewDesc("socktrace_dns_lookups_total",
		"socktrace's own lookups of failing destinations' names, by result: sent, failed (no answer), limited (not sent: asked lately, or too many under way).",
		[]string{"result"}, nil)
	d.recErrors = prometheus.NewDesc("socktrace_recording_errors_total",
		"Write errors (a full disk, EIO, the file removed) that paused the recording (-w); tracing and metrics go on, and the recording resumes once writes succeed again.", nil, nil)
	d.recPaused = prometheus.NewDesc("socktrace_recording_paused",
		"1 while the recording (-w) is paused by a write error, else 0.", nil, nil)
	d.build = prometheus.NewDesc("socktrace_build_info",
		"Always 1: the version of socktrace, the Go it was built with, and the kernel it runs on.",
		[]string{"version", "goversion", "kernel"}, nil)
	d.up = prometheus.NewDesc("socktrace_up",
		"1 while socktrace's program is attached and its events are read.", []string{"attach"}, nil)
	return d
}

// workloadLabels are the identity labels --workload-labels adds.
var workloadLabels = []string{"namespace", "pod", "container", "unit"}

// Collector is a prometheus.Collector for one running trace.
type Collector struct {
	opt Options
	d   *descs

	// mu guards the fields below but hists. Lock order: the pipeline's
	// lock (held around the Connected hook) before histMu; Collect takes
	// the pipeline's State before any of its own locks.
	mu       sync.Mutex
	p        *pipeline.Pipeline
	method   string
	tr       *events.Tracer
	connects *connectCounters
	lastErr  error

	histMu sync.Mutex
	hists  map[histKey]*hist

	// The netns label of each namespace a loopback destination was
	// reached from, fixed at first use (a namespace's name can change:
	// the process it was named after ends). Taken last, alone.
	nsMu    sync.Mutex
	nsNames func(uint32) string
	nsLabel map[uint32]string
}

type histKey struct {
	daddr string
	port  uint16
	netns string
}

type hist struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	n      uint64
	last   time.Time
}

// New returns a collector; it reports nothing about the trace until
// Attached is called.
func New(o Options) *Collector {
	if o.MaxDestinations <= 0 {
		o.MaxDestinations = DefaultMaxDestinations
	}
	if o.ForgetAfter < 0 {
		o.ForgetAfter = 0
	}
	return &Collector{opt: o, d: newDescs(o.WorkloadLabels), hists: map[histKey]*hist{}, nsLabel: map[uint32]string{}}
}

// netnsLabel is the netns label of destination daddr reached from
// namespace ino: "" unless daddr is a loopback address (127.0.0.0/8,
// ::1), which is a different place in each namespace; for those, the
// namespace's name as netns_name gives it (pod:NAMESPACE/POD,
// netns:NAME, host, COMM/PID), or netns:INODE when it has none.
// Other destinations are the same place from everywhere: their series
// stay merged across namespaces.
func (c *Collector) netnsLabel(ino uint32, daddr netip.Addr) string {
	if !daddr.Unmap().IsLoopback() {
		return ""
	}
	c.nsMu.Lock()
	defer c.nsMu.Unlock()
	if l, ok := c.nsLabel[ino]; ok {
		return l
	}
	l := ""
	if c.nsNames != nil {
		l = c.nsNames(ino)
	}
	if l == "" {
		l = "netns:" + strconv.FormatUint(uint64(ino), 10)
	}
	c.nsLabel[ino] = l
	return l
}

// forgetNetns drops the labels of the namespaces no series uses.
func (c *Collector) forgetNetns(used map[uint32]bool) {
	c.nsMu.Lock()
	defer c.nsMu.Unlock()
	for ino := range c.nsLabel {
		if !used[ino] {
			delete(c.nsLabel, ino)
		}
	}
}

// Hooks returns the pipeline hooks that feed the collector.
func (c *Collector) Hooks() *pipeline.Hooks {
	return &pipeline.Hooks{Attached: c.attached, Connected: c.connected}
}

func (c *Collector) attached(p *pipeline.Pipeline, tr *events.Tracer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p, c.method, c.tr = p, tr.Method(), tr
	c.connects = newConnectCounters(tr, c.opt.MaxDestinations, c.opt.ForgetAfter)
	c.nsMu.Lock()
	c.nsNames = p.NetnsName
	c.nsMu.Unlock()
	c.connects.netns = c.netnsLabel
	if c.opt.WorkloadLabels {
		c.connects.identify = p.Identify
	}
}

// Attached reports whether the trace is running, and since when its
// reading loop last came round.
func (c *Collector) Attached() (bool, time.Time) {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return false, time.Time{}
	}
	return true, p.Heartbeat()
}

// Recording is the recording's state (-w), nil without one or before
// the trace runs.
func (c *Collector) Recording() *pipeline.RecordingState {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Recording()
}

// connected runs in the reading goroutine for each handshake completed.
func (c *Collector) connected(t *events.Transition, d time.Duration) {
	k := histKey{t.Dst.String(), t.DPort, c.netnsLabel(t.Netns, t.Dst)}
	c.histMu.Lock()
	defer c.histMu.Unlock()
	h := c.hists[k]
	if h == nil {
		if len(c.hists) >= c.opt.MaxDestinations {
			c.foldHists()
			k = histKey{Other, 0, ""}
			h = c.hists[k]
		}
		if h == nil {
			h = &hist{counts: make([]uint64, len(HandshakeBuckets)+1)}
			c.hists[k] = h
		}
	}
	s := d.Seconds()
	i := sort.SearchFloat64s(HandshakeBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
	h.last = time.Now()
}

// foldHists makes room: the least recently used histogram joins "other".
// The caller holds histMu.
func (c *Collector) foldHists() {
	var oldest histKey
	var at time.Time
	for k, h := range c.hists {
		if k.daddr != Other && (at.IsZero() || h.last.Before(at)) {
			oldest, at = k, h.last
		}
	}
	h := c.hists[oldest]
	delete(c.hists, oldest)
	o := c.hists[histKey{Other, 0, ""}]
	if o == nil {
		o = &hist{counts: make([]uint64, len(HandshakeBuckets)+1)}
		c.hists[histKey{Other, 0, ""}] = o
	}
	for i, v := range h.counts {
		o.counts[i] += v
	}
	o.sum += h.sum
	o.n += h.n
	if h.last.After(o.last) {
		o.last = h.last
	}
}

// Update reads the kernel's counters now (a scrape does too): call it
// every few seconds, so the kernel's map never fills between scrapes.
func (c *Collector) Update() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connects == nil {
		return nil
	}
	c.lastErr = c.connects.update(time.Now())
	return c.lastErr
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.d.attempts, c.d.synRetrans, c.d.retrans, c.d.resets, c.d.bytes, c.d.failing, c.d.streak, c.d.duration, c.d.sockets,
		c.d.closeWait, c.d.queueFull, c.d.transitions, c.d.lost, c.d.skipped, c.d.reconciled,
		c.d.reconciles, c.d.folded, c.d.untracked, c.d.up, c.d.build, c.d.misses, c.d.rescued,
		c.d.staleDNS, c.d.dnsAnswers, c.d.dnsEvicted, c.d.dnsLookups, c.d.kernelForgot, c.d.cgroupsUncached,
		c.d.recErrors, c.d.recPaused} {
		ch <- d
	}
}

var outcomeNames = [events.NumOutcomes]string{"established", "refused", "timeout", "unreachable", "aborted"}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.d.build, prometheus.GaugeValue, 1, c.opt.Version, runtime.Version(), kernelRelease())
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p == nil {
		ch <- prometheus.MustNewConstMetric(c.d.up, prometheus.GaugeValue, 0, "")
		return
	}
	st := p.State()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.lastErr = c.connects.update(now)

	ch <- prometheus.MustNewConstMetric(c.d.up, prometheus.GaugeValue, 1, c.method)
	c.connects.each(func(l destLabels, n counts) {
		for o := 0; o < events.NumOutcomes; o++ {
			ch <- prometheus.MustNewConstMetric(c.d.attempts, prometheus.CounterValue, float64(n[o]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm, outcomeNames[o])...)
		}
		ch <- prometheus.MustNewConstMetric(c.d.synRetrans, prometheus.CounterValue, float64(n[events.CounterSynRetrans]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm)...)
		ch <- prometheus.MustNewConstMetric(c.d.retrans, prometheus.CounterValue, float64(n[events.CounterRetrans]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm)...)
		ch <- prometheus.MustNewConstMetric(c.d.resets, prometheus.CounterValue, float64(n[events.CounterRstSent]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm, "sent")...)
		ch <- prometheus.MustNewConstMetric(c.d.resets, prometheus.CounterValue, float64(n[events.CounterRstReceived]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm, "received")...)
		ch <- prometheus.MustNewConstMetric(c.d.bytes, prometheus.CounterValue, float64(n[events.CounterBytesAcked]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm, "sent")...)
		ch <- prometheus.MustNewConstMetric(c.d.bytes, prometheus.CounterValue, float64(n[events.CounterBytesReceived]), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm, "received")...)
	})
	ch <- prometheus.MustNewConstMetric(c.d.folded, prometheus.CounterValue, float64(c.connects.folded))

	// Failing destinations, from the analysis: the most recently
	// attempted, failing ones first, within the same bounds.
	seen := map[destLabels]bool{}
	for i := range st.Dests {
		d := &st.Dests[i]
		if c.opt.ForgetAfter > 0 && now.Sub(d.LastAttempt) > c.opt.ForgetAfter {
			continue
		}
		l := destLabels{daddr: addrString(d.Addr), dport: strconv.Itoa(int(d.Port)), comm: UnknownComm, netns: c.netnsLabel(d.Netns, d.Addr)}
		if d.OwnerKnown {
			l.comm = d.Comm
			if c.opt.WorkloadLabels {
				l.who = workloadOf(d.Owner)
			}
		}
		if seen[l] || (len(seen) >= c.opt.MaxDestinations && !d.Failing) {
			continue
		}
		seen[l] = true
		ch <- prometheus.MustNewConstMetric(c.d.failing, prometheus.GaugeValue, b2f(d.Failing), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm)...)
		ch <- prometheus.MustNewConstMetric(c.d.streak, prometheus.GaugeValue, float64(d.Streak), c.vals(l.who, l.daddr, l.dport, l.netns, l.comm)...)
	}

	c.histMu.Lock()
	defer c.histMu.Unlock()
	for k, h := range c.hists {
		if c.opt.ForgetAfter > 0 && now.Sub(h.last) > c.opt.ForgetAfter {
			delete(c.hists, k)
			continue
		}
		buckets := make(map[float64]uint64, len(HandshakeBuckets))
		var cum uint64
		for i, ub := range HandshakeBuckets {
			cum += h.counts[i]
			buckets[ub] = cum
		}
		port := strconv.Itoa(int(k.port))
		if k.daddr == Other {
			port = Other
		}
		ch <- prometheus.MustNewConstHistogram(c.d.duration, h.n, h.sum, buckets, k.daddr, port, k.netns)
	}

	// Keep the netns labels of the namespaces still in use.
	used := map[uint32]bool{}
	for _, k := range c.connects.keyOf {
		used[k.Netns] = true
	}
	for i := range st.Dests {
		used[st.Dests[i].Netns] = true
	}
	c.forgetNetns(used)

	for s := tcpstate.First; s <= tcpstate.Last; s++ {
		if s == tcpstate.Close || s == tcpstate.NewSynRecv {
			continue // no socket stays in them
		}
		ch <- prometheus.MustNewConstMetric(c.d.sockets, prometheus.GaugeValue, float64(st.Sockets[s]), s.String())
	}
	type owner struct {
		comm string
		who  workload
	}
	ownerOf := func(known bool, comm string, id *identity.Identity) owner {
		o := owner{comm: commOf(known, comm)}
		if known && c.opt.WorkloadLabels {
			o.who = workloadOf(id)
		}
		return o
	}
	cw := map[owner]int{}
	for _, l := range st.Pressure.CloseWait {
		cw[ownerOf(l.OwnerKnown, l.Comm, l.Owner)] += l.Count
	}
	for o, n := range cw {
		ch <- prometheus.MustNewConstMetric(c.d.closeWait, prometheus.GaugeValue, float64(n), c.vals(o.who, o.comm)...)
	}
	type listener struct {
		port string
		owner
	}
	full := map[listener]bool{}
	for _, l := range st.Pressure.Listeners {
		k := listener{strconv.Itoa(int(l.Port)), ownerOf(l.OwnerKnown, l.Comm, l.Owner)}
		full[k] = full[k] || l.Full
	}
	for k, f := range full {
		ch <- prometheus.MustNewConstMetric(c.d.queueFull, prometheus.GaugeValue, b2f(f), c.vals(k.who, k.port, k.comm)...)
	}

	ch <- prometheus.MustNewConstMetric(c.d.transitions, prometheus.CounterValue, float64(st.Transitions))
	ch <- prometheus.MustNewConstMetric(c.d.lost, prometheus.CounterValue, float64(st.Lost))
	ch <- prometheus.MustNewConstMetric(c.d.skipped, prometheus.CounterValue, float64(st.Skipped))
	ch <- prometheus.MustNewConstMetric(c.d.reconciled, prometheus.CounterValue, float64(st.Closed), "closed")
	ch <- prometheus.MustNewConstMetric(c.d.reconciled, prometheus.CounterValue, float64(st.Added), "added")
	ch <- prometheus.MustNewConstMetric(c.d.reconciled, prometheus.CounterValue, float64(st.Changed), "changed")
	ch <- prometheus.MustNewConstMetric(c.d.reconciles, prometheus.CounterValue, float64(st.Reconciles))
	ch <- prometheus.MustNewConstMetric(c.d.untracked, prometheus.CounterValue, float64(st.History.Untracked))
	ch <- prometheus.MustNewConstMetric(c.d.kernelForgot, prometheus.CounterValue, float64(st.History.KernelForgot))
	ch <- prometheus.MustNewConstMetric(c.d.cgroupsUncached, prometheus.GaugeValue, float64(st.CgroupsUncached))
	if c.tr != nil {
		primary, backup := c.tr.RecursionMisses()
		ch <- prometheus.MustNewConstMetric(c.d.misses, prometheus.CounterValue, float64(primary), "primary")
		ch <- prometheus.MustNewConstMetric(c.d.misses, prometheus.CounterValue, float64(backup), "backup")
		ch <- prometheus.MustNewConstMetric(c.d.rescued, prometheus.CounterValue, float64(c.tr.Rescued()))
	}
	if d := st.DNS; d != nil {
		ch <- prometheus.MustNewConstMetric(c.d.staleDNS, prometheus.GaugeValue, float64(d.StaleDestinations))
		ch <- prometheus.MustNewConstMetric(c.d.dnsAnswers, prometheus.CounterValue, float64(d.Cache.Answers), "taken")
		ch <- prometheus.MustNewConstMetric(c.d.dnsAnswers, prometheus.CounterValue, float64(d.Cache.Malformed), "malformed")
		ch <- prometheus.MustNewConstMetric(c.d.dnsAnswers, prometheus.CounterValue, float64(d.Lost), "lost")
		ch <- prometheus.MustNewConstMetric(c.d.dnsEvicted, prometheus.CounterValue, float64(d.Cache.AddrsEvicted), "addr")
		ch <- prometheus.MustNewConstMetric(c.d.dnsEvicted, prometheus.CounterValue, float64(d.Cache.NamesEvicted), "name")
		ch <- prometheus.MustNewConstMetric(c.d.dnsLookups, prometheus.CounterValue, float64(d.Lookups.Sent), "sent")
		ch <- prometheus.MustNewConstMetric(c.d.dnsLookups, prometheus.CounterValue, float64(d.Lookups.Failed), "failed")
		ch <- prometheus.MustNewConstMetric(c.d.dnsLookups, prometheus.CounterValue, float64(d.Lookups.Limited), "limited")
	}
	if r := st.Recording; r != nil {
		ch <- prometheus.MustNewConstMetric(c.d.recErrors, prometheus.CounterValue, float64(r.Errors))
		ch <- prometheus.MustNewConstMetric(c.d.recPaused, prometheus.GaugeValue, b2f(r.Paused))
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// vals is a metric's label values: vs, then the workload labels if on.
func (c *Collector) vals(who workload, vs ...string) []string {
	if c.opt.WorkloadLabels {
		return append(vs, who.values()...)
	}
	return vs
}

func commOf(known bool, comm string) string {
	if known {
		return comm
	}
	return UnknownComm
}

func addrString(a netip.Addr) string { return a.Unmap().String() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
