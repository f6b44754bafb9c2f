package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// natMetrics count the connect attempts to destinations this host's NAT
// translated, by the backend the conntrack entry sent them to and
// outcome, as the pipeline's Ended hook tells of them (user space:
// attempts whose records were lost are not in them). Within the
// destination metrics' bound: the first --max-destinations label sets
// of daddr, dport and backend keep their own series; the attempts of
// any other fold into daddr, dport, actual_daddr and actual_dport
// "other", and stay there, so every series only grows.
type natMetrics struct {
	opt      Options
	attempts *prometheus.Desc

	mu   sync.Mutex
	sets map[natLabels]*[len(outcomeNames)]uint64
}

type natLabels struct{ daddr, dport, actualDaddr, actualDport string }

var natOther = natLabels{Other, Other, Other, Other}

func newNATMetrics(o Options) *natMetrics {
	return &natMetrics{opt: o,
		attempts: prometheus.NewDesc("socktrace_nat_connect_attempts_total",
			"Connect attempts that ended, to destinations this host's NAT translated (a Service VIP, a published port), by the backend the conntrack entry sent them to and outcome (established, refused, timeout, unreachable, aborted).",
			[]string{"daddr", "dport", "actual_daddr", "actual_dport", "outcome"}, nil),
		sets: map[natLabels]*[len(outcomeNames)]uint64{},
	}
}

// ended runs in the reading goroutine for each connect attempt that
// ended (syn-sent -> established or close).
func (m *natMetrics) ended(t *record.Transition) {
	if !t.Actual.IsValid() {
		return
	}
	o := analysis.Established
	if t.New == tcpstate.Close {
		o = analysis.OutcomeOf(t.SkErr)
	}
	l := natLabels{addrString(t.Dst), strconv.Itoa(int(t.DPort)), addrString(t.Actual.Addr()), strconv.Itoa(int(t.Actual.Port()))}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.sets[l]
	if n == nil {
		if len(m.sets) >= m.opt.MaxDestinations {
			l = natOther
			n = m.sets[l]
		}
		if n == nil {
			n = new([len(outcomeNames)]uint64)
			m.sets[l] = n
		}
	}
	n[o]++
}

func (m *natMetrics) describe(ch chan<- *prometheus.Desc) { ch <- m.attempts }

func (m *natMetrics) collect(ch chan<- prometheus.Metric, _ *scrape) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for l, n := range m.sets {
		for o, v := range n {
			ch <- prometheus.MustNewConstMetric(m.attempts, prometheus.CounterValue, float64(v),
				l.daddr, l.dport, l.actualDaddr, l.actualDport, outcomeNames[o])
		}
	}
}
