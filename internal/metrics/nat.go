package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/analysis"
)

// natMetrics are the connect attempts to destinations this host's NAT
// translated, by the backend they went to and their outcome, from the
// analysis (user space: attempts whose records were lost are not in
// them). Within the destination metrics' bounds: at most
// --max-destinations label sets of daddr, dport and backend (failing
// destinations first, then the most recently attempted); the rest fold
// into daddr, dport, actual_daddr and actual_dport "other".
type natMetrics struct {
	opt      Options
	attempts *prometheus.Desc
}

func newNATMetrics(o Options) *natMetrics {
	return &natMetrics{opt: o,
		attempts: prometheus.NewDesc("socktrace_nat_connect_attempts_total",
			"Connect attempts that ended, to destinations this host's NAT translated (a Service VIP, a published port), by the backend the conntrack entry sent them to and outcome (established, refused, timeout, unreachable, aborted).",
			[]string{"daddr", "dport", "actual_daddr", "actual_dport", "outcome"}, nil),
	}
}

func (m *natMetrics) describe(ch chan<- *prometheus.Desc) { ch <- m.attempts }

type natLabels struct{ daddr, dport, actualDaddr, actualDport string }

func (m *natMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	sets := map[natLabels]*[len(outcomeNames)]uint64{}
	other := natLabels{Other, Other, Other, Other}
	for i := range s.st.Dests {
		d := &s.st.Dests[i]
		for j := range d.Backends {
			b := &d.Backends[j]
			l := natLabels{addrString(d.Addr), strconv.Itoa(int(d.Port)), addrString(b.Addr.Addr()), strconv.Itoa(int(b.Addr.Port()))}
			if sets[l] == nil && len(sets) >= m.opt.MaxDestinations {
				l = other
			}
			n := sets[l]
			if n == nil {
				n = new([len(outcomeNames)]uint64)
				sets[l] = n
			}
			n[analysis.Established] += b.Successes
			for _, o := range analysis.Failures {
				n[o] += b.Failures[o]
			}
		}
	}
	for l, n := range sets {
		for o, v := range n {
			ch <- prometheus.MustNewConstMetric(m.attempts, prometheus.CounterValue, float64(v),
				l.daddr, l.dport, l.actualDaddr, l.actualDport, outcomeNames[o])
		}
	}
}
