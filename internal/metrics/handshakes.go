package metrics

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/record"
)

// HandshakeBuckets are the connect_duration_seconds buckets: loopback
// handshakes take tens of microseconds, a SYN retransmitted takes 1 s.
var HandshakeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// handshakes are the handshake times by destination: histograms the
// pipeline's Connected hook fills as connects are established, bounded
// like the destinations (the least recently used fold into "other").
type handshakes struct {
	opt      Options
	netns    *netnsLabels
	duration *prometheus.Desc

	histMu sync.Mutex
	hists  map[histKey]*hist
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

func newHandshakes(o Options, netns *netnsLabels) *handshakes {
	return &handshakes{
		opt: o, netns: netns,
		duration: prometheus.NewDesc("socktrace_connect_duration_seconds",
			"Handshake time of the connects that were established (syn-sent to established).",
			[]string{"daddr", "dport", "netns"}, nil),
		hists: map[histKey]*hist{},
	}
}

// connected runs in the reading goroutine for each handshake completed.
func (h *handshakes) connected(t *record.Transition, d time.Duration) {
	k := histKey{t.Dst.String(), t.DPort, h.netns.netnsLabel(t.Netns, t.Dst)}
	h.histMu.Lock()
	defer h.histMu.Unlock()
	hi := h.histFor(k)
	s := d.Seconds()
	i := sort.SearchFloat64s(HandshakeBuckets, s)
	hi.counts[i]++
	hi.sum += s
	hi.n++
	hi.last = time.Now()
}

// histFor is k's histogram, made if need be; past MaxDestinations, a
// new destination's is "other". The caller holds histMu.
func (h *handshakes) histFor(k histKey) *hist {
	hi := h.hists[k]
	if hi == nil {
		if len(h.hists) >= h.opt.MaxDestinations {
			h.foldHists()
			k = histKey{Other, 0, ""}
			hi = h.hists[k]
		}
		if hi == nil {
			hi = &hist{counts: make([]uint64, len(HandshakeBuckets)+1)}
			h.hists[k] = hi
		}
	}
	return hi
}

// foldHists makes room: the least recently used histogram joins "other".
// The caller holds histMu.
func (h *handshakes) foldHists() {
	var oldest histKey
	var at time.Time
	for k, hi := range h.hists {
		if k.daddr != Other && (at.IsZero() || hi.last.Before(at)) {
			oldest, at = k, hi.last
		}
	}
	hi := h.hists[oldest]
	delete(h.hists, oldest)
	o := h.hists[histKey{Other, 0, ""}]
	if o == nil {
		o = &hist{counts: make([]uint64, len(HandshakeBuckets)+1)}
		h.hists[histKey{Other, 0, ""}] = o
	}
	for i, v := range hi.counts {
		o.counts[i] += v
	}
	o.sum += hi.sum
	o.n += hi.n
	if hi.last.After(o.last) {
		o.last = hi.last
	}
}

func (h *handshakes) describe(ch chan<- *prometheus.Desc) { ch <- h.duration }

// collect reports the histograms, forgetting those quiet too long.
func (h *handshakes) collect(ch chan<- prometheus.Metric, s *scrape) {
	h.histMu.Lock()
	defer h.histMu.Unlock()
	for k, hi := range h.hists {
		if h.opt.ForgetAfter > 0 && s.now.Sub(hi.last) > h.opt.ForgetAfter {
			delete(h.hists, k)
			continue
		}
		port := strconv.Itoa(int(k.port))
		if k.daddr == Other {
			port = Other
		}
		ch <- prometheus.MustNewConstHistogram(h.duration, hi.n, hi.sum, hi.cumulative(), k.daddr, port, k.netns)
	}
}

// cumulative is the histogram's counts as Prometheus wants them: by
// upper bound, each counting all below it.
func (hi *hist) cumulative() map[float64]uint64 {
	buckets := make(map[float64]uint64, len(HandshakeBuckets))
	var cum uint64
	for i, ub := range HandshakeBuckets {
		cum += hi.counts[i]
		buckets[ub] = cum
	}
	return buckets
}
