package metrics

import "github.com/prometheus/client_golang/prometheus"

// dnsMetrics are what passive DNS saw and kept, and socktrace's own
// lookups; none without passive DNS (--no-dns).
type dnsMetrics struct {
	stale, answers, evicted, lookups *prometheus.Desc
}

func newDNSMetrics() *dnsMetrics {
	return &dnsMetrics{
		stale: prometheus.NewDesc("socktrace_stale_dns_destinations",
			"Destinations whose last attempt went to an address the DNS name it came from no longer resolves to (a stale-dns alert was raised and no connect succeeded since).", nil, nil),
		answers: prometheus.NewDesc("socktrace_dns_answers_total",
			"DNS answers seen delivered to local sockets, by result: taken (parsed and kept), malformed (not an answer to an A/AAAA question, or not DNS), lost (the kernel dropped them: their ring buffer was full).",
			[]string{"result"}, nil),
		evicted: prometheus.NewDesc("socktrace_dns_cache_evictions_total",
			"Addresses and names forgotten to keep the DNS map within its bounds.", []string{"what"}, nil),
		lookups: prometheus.NewDesc("socktrace_dns_lookups_total",
			"socktrace's own lookups of failing destinations' names, by result: sent, failed (no answer), limited (not sent: asked lately, or too many under way).",
			[]string{"result"}, nil),
	}
}

func (m *dnsMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.stale, m.answers, m.evicted, m.lookups} {
		ch <- d
	}
}

func (m *dnsMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	d := s.st.DNS
	if d == nil {
		return
	}
	counter := func(desc *prometheus.Desc, v uint64, label string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), label)
	}
	ch <- prometheus.MustNewConstMetric(m.stale, prometheus.GaugeValue, float64(d.StaleDestinations))
	counter(m.answers, d.Cache.Answers, "taken")
	counter(m.answers, d.Cache.Malformed, "malformed")
	counter(m.answers, d.Lost, "lost")
	counter(m.evicted, d.Cache.AddrsEvicted, "addr")
	counter(m.evicted, d.Cache.NamesEvicted, "name")
	counter(m.lookups, d.Lookups.Sent, "sent")
	counter(m.lookups, d.Lookups.Failed, "failed")
	counter(m.lookups, d.Lookups.Limited, "limited")
}
