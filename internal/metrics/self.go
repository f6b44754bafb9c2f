package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// selfMetrics are socktrace's own: what it is and whether it traces.
type selfMetrics struct {
	version   string
	build, up *prometheus.Desc
}

func newSelfMetrics(version string) *selfMetrics {
	return &selfMetrics{
		version: version,
		build: prometheus.NewDesc("socktrace_build_info",
			"Always 1: the version of socktrace, the Go it was built with, and the kernel it runs on.",
			[]string{"version", "goversion", "kernel"}, nil),
		up: prometheus.NewDesc("socktrace_up",
			"1 while socktrace's program is attached and its events are read.", []string{"attach"}, nil),
	}
}

func (m *selfMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.build
	ch <- m.up
}

// collectDetached reports before the trace runs: not up.
func (m *selfMetrics) collectDetached(ch chan<- prometheus.Metric) {
	m.collectBuild(ch)
	ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 0, "")
}

func (m *selfMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	m.collectBuild(ch)
	ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 1, s.method)
}

func (m *selfMetrics) collectBuild(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.build, prometheus.GaugeValue, 1, m.version, runtime.Version(), kernelRelease())
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
