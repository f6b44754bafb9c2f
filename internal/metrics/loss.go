package metrics

import "github.com/prometheus/client_golang/prometheus"

// lossMetrics are how complete socktrace's view is: the transitions
// received, those lost, skipped or rescued on the way from the kernel,
// and what its tables could not hold.
type lossMetrics struct {
	transitions, lost, skipped, misses, rescued *prometheus.Desc
	untracked, kernelForgot, cgroupsUncached    *prometheus.Desc
}

func newLossMetrics() *lossMetrics {
	return &lossMetrics{
		transitions: prometheus.NewDesc("socktrace_transitions_total",
			"TCP state transitions received from the kernel.", nil, nil),
		lost: prometheus.NewDesc("socktrace_transitions_lost_total",
			"Transitions lost because the ring buffer was full (raise --ring-size); reconciliation repairs the live tables.", nil, nil),
		skipped: prometheus.NewDesc("socktrace_transitions_skipped_total",
			"State changes the kernel did not run socktrace's program for (it was already running on that CPU).", nil, nil),
		misses: prometheus.NewDesc("socktrace_bpf_recursion_misses_total",
			"Runs of socktrace's state-transition programs the kernel skipped because the program was already running on that CPU (a nested transition), by program: the primary, and the backup that sends what the primary is skipped for.",
			[]string{"program"}, nil),
		rescued: prometheus.NewDesc("socktrace_transitions_rescued_total",
			"Nested transitions the kernel skipped the primary program for and the backup program sent (socktrace_transitions_skipped_total counts those both missed).", nil, nil),
		untracked: prometheus.NewDesc("socktrace_sockets_untracked_total",
			"Sockets not remembered because the live table was full (--max-sockets).", nil, nil),
		kernelForgot: prometheus.NewDesc("socktrace_bpf_sockets_forgotten_total",
			"Transitions of sockets born during the trace that came without the kernel's memory of them: its socket map (--bpf-max-sockets, an LRU) was full and dropped the least recently active.", nil, nil),
		cgroupsUncached: prometheus.NewDesc("socktrace_cgroups_uncached",
			"Cgroups the last walk of the cgroup2 tree found but did not cache (more than 65,536, or 16 MiB of paths): their owners have no identity.", nil, nil),
	}
}

func (m *lossMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.transitions, m.lost, m.skipped, m.misses, m.rescued, m.untracked, m.kernelForgot, m.cgroupsUncached} {
		ch <- d
	}
}

func (m *lossMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st := s.st
	counter(m.transitions, st.Transitions)
	counter(m.lost, st.Lost)
	counter(m.skipped, st.Skipped)
	counter(m.untracked, st.History.Untracked)
	counter(m.kernelForgot, st.History.KernelForgot)
	ch <- prometheus.MustNewConstMetric(m.cgroupsUncached, prometheus.GaugeValue, float64(st.CgroupsUncached))
	if s.tracer != nil {
		primary, backup := s.tracer.RecursionMisses()
		counter(m.misses, primary, "primary")
		counter(m.misses, backup, "backup")
		counter(m.rescued, s.tracer.Rescued())
	}
}
