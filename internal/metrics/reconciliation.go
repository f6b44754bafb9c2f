package metrics

import "github.com/prometheus/client_golang/prometheus"

// reconciliationMetrics are the checks of the live table against the
// kernel (sock_diag), and what they corrected.
type reconciliationMetrics struct {
	reconciled, reconciles *prometheus.Desc
}

func newReconciliationMetrics() *reconciliationMetrics {
	return &reconciliationMetrics{
		reconciled: prometheus.NewDesc("socktrace_reconciled_sockets_total",
			"Sockets corrected by reconciliation with the kernel: closed (their close was not seen), added (their birth was not seen), changed (state moved unseen).",
			[]string{"kind"}, nil),
		reconciles: prometheus.NewDesc("socktrace_reconciliations_total",
			"Reconciliations of the live table with the kernel.", nil, nil),
	}
}

func (m *reconciliationMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.reconciled
	ch <- m.reconciles
}

func (m *reconciliationMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	ch <- prometheus.MustNewConstMetric(m.reconciled, prometheus.CounterValue, float64(s.st.Closed), "closed")
	ch <- prometheus.MustNewConstMetric(m.reconciled, prometheus.CounterValue, float64(s.st.Added), "added")
	ch <- prometheus.MustNewConstMetric(m.reconciled, prometheus.CounterValue, float64(s.st.Changed), "changed")
	ch <- prometheus.MustNewConstMetric(m.reconciles, prometheus.CounterValue, float64(s.st.Reconciles))
}
