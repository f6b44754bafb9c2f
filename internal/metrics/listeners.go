package metrics

import (
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// listenMetrics count the SYNs that listeners dropped, their accept
// queue full (package listeners), by port and owner. The counters only
// grow: each scrape adds what each listener dropped since the last, so
// a listener that closes or is forgotten keeps its share. At most
// Options.MaxDestinations label sets; the others are folded into
// sport="other", comm="other".
type listenMetrics struct {
	opt    Options
	lab    labeller
	drops  *prometheus.Desc
	last   map[listenerKey]uint64 // each listener's total at the last scrape
	totals map[listenLabels]uint64
}

type listenerKey struct {
	netns  uint32
	addr   netip.Addr
	port   uint16
	cookie uint64
}

type listenLabels struct {
	sport, comm string
	who         workload
}

func newListenMetrics(o Options, lab labeller) *listenMetrics {
	return &listenMetrics{
		opt: o, lab: lab,
		drops: prometheus.NewDesc("socktrace_listen_overflow_drops_total",
			"SYNs dropped by listeners whose accept queue was full (the kernel's sk_drops, as ss -m shows it; nstat's TcpExtListenOverflows), since socktrace started, by listening port and owning process.",
			lab.names("sport", "comm"), nil),
		last: map[listenerKey]uint64{}, totals: map[listenLabels]uint64{},
	}
}

func (m *listenMetrics) describe(ch chan<- *prometheus.Desc) { ch <- m.drops }

func (m *listenMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	seen := map[listenerKey]bool{}
	for i := range s.st.Listeners {
		l := &s.st.Listeners[i]
		k := listenerKey{l.Netns, l.Addr, l.Port, l.Cookie}
		seen[k] = true
		delta := l.Total
		if prev, ok := m.last[k]; ok && l.Total >= prev {
			delta = l.Total - prev
		}
		m.last[k] = l.Total
		if delta == 0 {
			continue
		}
		lb := listenLabels{sport: strconv.Itoa(int(l.Port)), comm: commOf(l.Owner.Known, l.Owner.Comm)}
		if l.Owner.Known && m.lab.workload {
			lb.who = workloadOf(l.Owner.ID)
		}
		if _, ok := m.totals[lb]; !ok && len(m.totals) >= m.opt.MaxDestinations {
			lb = listenLabels{sport: "other", comm: "other"}
		}
		m.totals[lb] += delta
	}
	for k := range m.last {
		if !seen[k] {
			delete(m.last, k)
		}
	}
	for lb, n := range m.totals {
		ch <- prometheus.MustNewConstMetric(m.drops, prometheus.CounterValue, float64(n), m.lab.vals(lb.who, lb.sport, lb.comm)...)
	}
}
