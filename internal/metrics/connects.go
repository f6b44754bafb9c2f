package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/events"
)

// connectMetrics are what the kernel counts by destination: connect
// attempts by outcome, SYN and data retransmits, resets and bytes, in
// the bounded label sets of connectCounters.
type connectMetrics struct {
	lab                                          labeller
	attempts, synRetrans, retrans, resets, bytes *prometheus.Desc
	folded                                       *prometheus.Desc
}

func newConnectMetrics(lab labeller) *connectMetrics {
	return &connectMetrics{
		lab: lab,
		attempts: prometheus.NewDesc("socktrace_connect_attempts_total",
			"Connect attempts (active opens) that ended, by destination, owning process and outcome (established, refused, timeout, unreachable, aborted); counted in the kernel, exact when transitions are lost.",
			lab.names("daddr", "dport", "netns", "comm", "outcome"), nil),
		synRetrans: prometheus.NewDesc("socktrace_syn_retransmits_total",
			"SYN retransmissions tried by connect attempts to this destination (no answer to the first), also those a firewall dropped on the way out: counted in the kernel.",
			lab.names("daddr", "dport", "netns", "comm"), nil),
		retrans: prometheus.NewDesc("socktrace_retransmits_total",
			"Data segments retransmitted by connections to this destination: counted in the kernel.",
			lab.names("daddr", "dport", "netns", "comm"), nil),
		resets: prometheus.NewDesc("socktrace_resets_total",
			"RSTs sent and received on connections (and connect attempts) to this destination: counted in the kernel.",
			lab.names("daddr", "dport", "netns", "comm", "direction"), nil),
		bytes: prometheus.NewDesc("socktrace_bytes_total",
			"Data bytes sent (and acknowledged) and received by connections to this destination that closed (the SYN and FINs are not data): counted in the kernel.",
			lab.names("daddr", "dport", "netns", "comm", "direction"), nil),
		folded: prometheus.NewDesc("socktrace_destinations_folded_total",
			"Destination label sets folded into daddr=\"other\" to stay within --max-destinations.", nil, nil),
	}
}

func (m *connectMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.attempts, m.synRetrans, m.retrans, m.resets, m.bytes, m.folded} {
		ch <- d
	}
}

var outcomeNames = [events.NumOutcomes]string{"established", "refused", "timeout", "unreachable", "aborted"}

func (m *connectMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	s.connects.each(func(l destLabels, n counts) { m.collectDest(ch, l, n) })
	ch <- prometheus.MustNewConstMetric(m.folded, prometheus.CounterValue, float64(s.connects.folded))
}

// collectDest reports one destination label set's counters.
func (m *connectMetrics) collectDest(ch chan<- prometheus.Metric, l destLabels, n counts) {
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		vals := append([]string{l.daddr, l.dport, l.netns, l.comm}, extra...)
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), m.lab.vals(l.who, vals...)...)
	}
	for o := 0; o < events.NumOutcomes; o++ {
		counter(m.attempts, n[o], outcomeNames[o])
	}
	counter(m.synRetrans, n[events.CounterSynRetrans])
	counter(m.retrans, n[events.CounterRetrans])
	counter(m.resets, n[events.CounterRstSent], "sent")
	counter(m.resets, n[events.CounterRstReceived], "received")
	counter(m.bytes, n[events.CounterBytesAcked], "sent")
	counter(m.bytes, n[events.CounterBytesReceived], "received")
}
