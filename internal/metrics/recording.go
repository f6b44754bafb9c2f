package metrics

import "github.com/prometheus/client_golang/prometheus"

// recordingMetrics are the recording's health (-w); none without one.
type recordingMetrics struct {
	errors, paused *prometheus.Desc
}

func newRecordingMetrics() *recordingMetrics {
	return &recordingMetrics{
		errors: prometheus.NewDesc("socktrace_recording_errors_total",
			"Write errors (a full disk, EIO, the file removed) that paused the recording (-w); tracing and metrics go on, and the recording resumes once writes succeed again.", nil, nil),
		paused: prometheus.NewDesc("socktrace_recording_paused",
			"1 while the recording (-w) is paused by a write error, else 0.", nil, nil),
	}
}

func (m *recordingMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.errors
	ch <- m.paused
}

func (m *recordingMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	r := s.st.Recording
	if r == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.errors, prometheus.CounterValue, float64(r.Errors))
	ch <- prometheus.MustNewConstMetric(m.paused, prometheus.GaugeValue, b2f(r.Paused))
}
