package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// flightMetrics are the flight recorder's (--flight-recorder); none
// without one.
type flightMetrics struct {
	recordings, bytes, size, dropped, removed, errors *prometheus.Desc
}

func newFlightMetrics() *flightMetrics {
	return &flightMetrics{
		recordings: prometheus.NewDesc("socktrace_flight_recordings_total",
			"Flight recordings written to --flight-dir, by the alert that started them (failing, stale-dns, listen-overflow, close-wait).", []string{"alert"}, nil),
		bytes: prometheus.NewDesc("socktrace_flight_recorder_bytes",
			"Memory the flight recorder holds now (its records of the last --flight-recorder), bytes.", nil, nil),
		size: prometheus.NewDesc("socktrace_flight_recorder_size_bytes",
			"The flight recorder's bound (--flight-recorder-size), bytes.", nil, nil),
		dropped: prometheus.NewDesc("socktrace_flight_recorder_dropped_total",
			"Records the flight recorder dropped, oldest first, to stay within --flight-recorder-size (its window is then shorter than --flight-recorder).", nil, nil),
		removed: prometheus.NewDesc("socktrace_flight_files_removed_total",
			"Flight recordings removed, oldest first, to keep at most --flight-max-files in --flight-dir.", nil, nil),
		errors: prometheus.NewDesc("socktrace_flight_errors_total",
			"Flight recordings that could not be created or written (see the agent's stderr).", nil, nil),
	}
}

func (m *flightMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.recordings, m.bytes, m.size, m.dropped, m.removed, m.errors} {
		ch <- d
	}
}

func (m *flightMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	f := s.st.Flight
	if f == nil {
		return
	}
	kinds := make([]string, 0, len(f.Recordings))
	for k := range f.Recordings {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ch <- prometheus.MustNewConstMetric(m.recordings, prometheus.CounterValue, float64(f.Recordings[k]), k)
	}
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(f.Bytes))
	ch <- prometheus.MustNewConstMetric(m.size, prometheus.GaugeValue, float64(f.Size))
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(f.Dropped))
	ch <- prometheus.MustNewConstMetric(m.removed, prometheus.CounterValue, float64(f.Removed))
	ch <- prometheus.MustNewConstMetric(m.errors, prometheus.CounterValue, float64(f.Errors))
}
