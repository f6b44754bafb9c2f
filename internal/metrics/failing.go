package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/analysis"
)

// failingMetrics are the analysis' verdict on each destination: failing
// or not, and its streak of failed connects; the most recently
// attempted, failing ones first, within the same bounds as the
// kernel's counters.
type failingMetrics struct {
	opt             Options
	lab             labeller
	netns           *netnsLabels
	failing, streak *prometheus.Desc
}

func newFailingMetrics(o Options, lab labeller, netns *netnsLabels) *failingMetrics {
	return &failingMetrics{
		opt: o, lab: lab, netns: netns,
		failing: prometheus.NewDesc("socktrace_destination_failing",
			"1 while a destination's connects keep failing (--fail-after in a row), 0 after it recovered.",
			lab.names("daddr", "dport", "netns", "comm"), nil),
		streak: prometheus.NewDesc("socktrace_destination_failure_streak",
			"Connect attempts in a row that failed, to this destination, up to the last one that ended.",
			lab.names("daddr", "dport", "netns", "comm"), nil),
	}
}

func (m *failingMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.failing
	ch <- m.streak
}

func (m *failingMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	seen := map[destLabels]bool{}
	for i := range s.st.Dests {
		d := &s.st.Dests[i]
		if m.opt.ForgetAfter > 0 && s.now.Sub(d.LastAttempt) > m.opt.ForgetAfter {
			continue
		}
		l := m.labelsOf(d)
		if seen[l] || (len(seen) >= m.opt.MaxDestinations && !d.Failing) {
			continue
		}
		seen[l] = true
		vals := m.lab.vals(l.who, l.daddr, l.dport, l.netns, l.comm)
		ch <- prometheus.MustNewConstMetric(m.failing, prometheus.GaugeValue, b2f(d.Failing), vals...)
		ch <- prometheus.MustNewConstMetric(m.streak, prometheus.GaugeValue, float64(d.Streak), vals...)
	}
}

// labelsOf is the label set of one of the analysis' destinations.
func (m *failingMetrics) labelsOf(d *analysis.Dest) destLabels {
	l := destLabels{daddr: addrString(d.Addr), dport: strconv.Itoa(int(d.Port)), comm: UnknownComm, netns: m.netns.netnsLabel(d.Netns, d.Addr)}
	if d.OwnerKnown {
		l.comm = d.Comm
		if m.opt.WorkloadLabels {
			l.who = workloadOf(d.Owner)
		}
	}
	return l
}
