// Package metrics exposes a running trace as Prometheus metrics: connect
// attempts by destination and outcome (counted in the kernel, so exact
// under overload), failing destinations, handshake times, live sockets by
// state (exact after each reconciliation with the kernel), CLOSE-WAIT
// leaks, full listeners, and socktrace's own health: transitions seen,
// lost and skipped, reconciliations. Label sets stay bounded: at most
// Options.MaxDestinations destinations, the least recently active folded
// into daddr="other", and those quiet for Options.ForgetAfter dropped.
//
// Each family of metrics is a small collector of its own, in its own
// file (self, connects, failing, handshakes, sockets, loss,
// reconciliation, dns, recording); Collector registers them together and
// gives each the same snapshot of the trace at every scrape. dests.go
// keeps the kernel's counters by destination within bounded label sets;
// netns.go names the namespaces of loopback destinations.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/pipeline"
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

// A family is one group of related metrics, like a node_exporter
// collector: it describes its metrics and reports them from a scrape.
type family interface {
	describe(ch chan<- *prometheus.Desc)
	collect(ch chan<- prometheus.Metric, s *scrape)
}

// scrape is what every family reports from, taken once per scrape so
// that the families agree with each other.
type scrape struct {
	st       *pipeline.State
	now      time.Time
	tracer   *events.Tracer
	method   string           // how the tracer attached
	connects *connectCounters // the kernel's counters, just read
	drops    *drops.Namer     // names drop reasons; nil without the drop hook
}

// Collector is a prometheus.Collector for one running trace: its
// families of metrics, and the pipeline hooks that feed them.
//
// Lock order: the pipeline's lock (held around the Connected hook)
// before the handshakes' lock; Collect takes the pipeline's State before
// any of its own locks; the netns labels' lock comes last (nothing is
// taken under it).
type Collector struct {
	opt Options

	// Embedded for the pipeline's hooks: the handshakes' connected is
	// the Connected hook; the netns labels name loopback destinations.
	*netnsLabels
	*handshakes

	self     *selfMetrics
	nat      *natMetrics
	families []family // all but self, which reports before the trace runs

	// mu guards the fields below, and is held through a scrape.
	mu       sync.Mutex
	p        *pipeline.View
	tr       *events.Tracer
	method   string
	connects *connectCounters
	drops    *drops.Namer
	lastErr  error
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
	ns := newNetnsLabels()
	hs := newHandshakes(o, ns)
	lab := labeller{workload: o.WorkloadLabels}
	nat := newNATMetrics(o)
	return &Collector{
		nat:         nat,
		opt:         o,
		netnsLabels: ns,
		handshakes:  hs,
		self:        newSelfMetrics(o.Version),
		families: []family{
			newConnectMetrics(lab),
			newDropMetrics(lab),
			newFailingMetrics(o, lab, ns),
			nat,
			hs,
			newSocketMetrics(lab),
			newLossMetrics(),
			newReconciliationMetrics(),
			newDNSMetrics(),
			newRecordingMetrics(),
			newFlightMetrics(),
			newListenMetrics(o, lab),
		},
	}
}

// Hooks returns the pipeline hooks that feed the collector.
func (c *Collector) Hooks() *pipeline.Hooks {
	return &pipeline.Hooks{Attached: c.attached, Connected: c.connected, Ended: c.nat.ended}
}

func (c *Collector) attached(p *pipeline.View, tr *events.Tracer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p, c.tr, c.method = p, tr, tr.Method()
	c.connects = newConnectCounters(tr, c.opt.MaxDestinations, c.opt.ForgetAfter)
	c.drops = newDropNamer(tr)
	c.setNames(p.NetnsName)
	c.connects.netns = c.netnsLabel
	if c.opt.WorkloadLabels {
		c.connects.identify = p.Identify
	}
}

// trace is the running trace's view, nil before it runs.
func (c *Collector) trace() *pipeline.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p
}

// Attached reports whether the trace is running, and since when its
// reading loop last came round.
func (c *Collector) Attached() (bool, time.Time) {
	p := c.trace()
	if p == nil {
		return false, time.Time{}
	}
	return true, p.Heartbeat()
}

// Recording is the recording's state (-w), nil without one or before
// the trace runs.
func (c *Collector) Recording() *pipeline.RecordingState {
	p := c.trace()
	if p == nil {
		return nil
	}
	return p.Recording()
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
	c.self.describe(ch)
	for _, f := range c.families {
		f.describe(ch)
	}
}

// Collect implements prometheus.Collector: before the trace runs, only
// socktrace's own build and state; then every family, from one scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	p := c.trace()
	if p == nil {
		c.self.collectDetached(ch)
		return
	}
	st := p.State()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.newScrape(st)
	c.self.collect(ch, s)
	for _, f := range c.families {
		f.collect(ch, s)
	}
	c.forgetUnusedNetns(s)
}

// newScrape reads the kernel's counters and bundles them with the
// pipeline's state. The caller holds mu.
func (c *Collector) newScrape(st *pipeline.State) *scrape {
	now := time.Now()
	c.lastErr = c.connects.update(now)
	return &scrape{st: st, now: now, tracer: c.tr, method: c.method, connects: c.connects, drops: c.drops}
}

// forgetUnusedNetns keeps the netns labels of the namespaces still in
// use, by the kernel's counters or the analysis' destinations.
func (c *Collector) forgetUnusedNetns(s *scrape) {
	used := map[uint32]bool{}
	for _, k := range s.connects.keyOf {
		used[k.Netns] = true
	}
	for i := range s.st.Dests {
		used[s.st.Dests[i].Netns] = true
	}
	c.forgetNetns(used)
}
