package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
)

// dropMetrics are the packets dropped on this host (skb:kfree_skb), as
// the kernel counts them: those of connects by destination, owner,
// reason and direction, within the destinations' bounds (a destination
// the connect metrics folded into daddr="other" is folded here alike);
// TCP packets of no socket socktrace follows by reason; and the drops of
// packets that are not TCP.
type dropMetrics struct {
	lab                  labeller
	drops, nosock, other *prometheus.Desc
}

func newDropMetrics(lab labeller) *dropMetrics {
	return &dropMetrics{
		lab: lab,
		drops: prometheus.NewDesc("socktrace_packet_drops_total",
			"Packets of connections to this destination dropped on this host (skb:kfree_skb), by the kernel's reason (the freeing function before Linux 5.17) and direction (sent or received): counted in the kernel, exact when transitions are lost.",
			lab.names("daddr", "dport", "comm", "reason", "direction"), nil),
		nosock: prometheus.NewDesc("socktrace_packet_drops_unattributed_total",
			"TCP packets dropped on this host that belong to no socket socktrace follows (NO_SOCKET: to a closed port; or one of a socket outside the trace's filter), by reason.",
			[]string{"reason"}, nil),
		other: prometheus.NewDesc("socktrace_packet_drops_not_tcp_total",
			"Packets dropped on this host that are not TCP over IPv4 or IPv6 (counted, not attributed).", nil, nil),
	}
}

func (m *dropMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.drops, m.nosock, m.other} {
		ch <- d
	}
}

// dropLabels is one label set of socktrace_packet_drops_total.
type dropLabels struct {
	daddr, dport, comm, reason, dir string
	who                             workload
}

func (m *dropMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	if s.tracer == nil || s.tracer.DropReasons() == events.DropsOff || s.drops == nil {
		return
	}
	got, overflow, err := s.tracer.DropCounts(nil)
	if err != nil {
		return
	}
	sums := map[dropLabels]uint64{}
	if overflow > 0 {
		// The kernel's map was full: counted, but of no destination.
		sums[dropLabels{Other, Other, Other, Other, Other, workload{}}] = overflow
	}
	for _, d := range got {
		l := s.connects.labelsOf(&d.Key.Dest)
		if !s.connects.active(l) {
			// Folded with the connect counters' destinations.
			l = destLabels{Other, l.dport, l.comm, "", l.who}
			if !s.connects.active(l) {
				l = destLabels{Other, Other, Other, "", workload{}}
			}
		}
		sums[dropLabels{l.daddr, l.dport, l.comm, s.drops.Name(d.Key.Reason), d.Key.Dir.String(), l.who}] += d.N
	}
	for l, n := range sums {
		ch <- prometheus.MustNewConstMetric(m.drops, prometheus.CounterValue, float64(n),
			m.lab.vals(l.who, l.daddr, l.dport, l.comm, l.reason, l.dir)...)
	}
	u, err := s.tracer.UnattributedDrops(0)
	if err != nil {
		return
	}
	byName := map[string]uint64{}
	for r, n := range u.NoSocket {
		byName[s.drops.Name(r)] += n
	}
	for r, n := range byName {
		ch <- prometheus.MustNewConstMetric(m.nosock, prometheus.CounterValue, float64(n), r)
	}
	ch <- prometheus.MustNewConstMetric(m.other, prometheus.CounterValue, float64(u.Other))
}

// newDropNamer names the tracer's drop reasons; nil when it has no drop
// hook (or the names cannot be read: the metrics are then left out).
func newDropNamer(tr *events.Tracer) *drops.Namer {
	if tr.DropReasons() == events.DropsOff {
		return nil
	}
	n, err := drops.NewNamer(tr.DropReasons(), tr.KernelTypes())
	if err != nil {
		return nil
	}
	return n
}
