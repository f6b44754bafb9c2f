package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// socketMetrics are the live sockets: how many in each state, and the
// pressure the last reconciliation found (CLOSE-WAIT leaks, full
// listeners) by owner.
type socketMetrics struct {
	lab                           labeller
	sockets, closeWait, queueFull *prometheus.Desc
}

func newSocketMetrics(lab labeller) *socketMetrics {
	return &socketMetrics{
		lab: lab,
		sockets: prometheus.NewDesc("socktrace_sockets",
			"Live TCP sockets by ss state, exact after each reconciliation with the kernel (sock_diag).",
			[]string{"state"}, nil),
		closeWait: prometheus.NewDesc("socktrace_close_wait_sockets",
			"Sockets in CLOSE-WAIT for longer than --close-wait-after (the peer closed, the application did not), by owning process.",
			lab.names("comm"), nil),
		queueFull: prometheus.NewDesc("socktrace_listen_queue_full",
			"1 when a listener's accept queue is full (new connections are dropped), 0 when it is under pressure but not full.",
			lab.names("sport", "comm"), nil),
	}
}

func (m *socketMetrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.sockets
	ch <- m.closeWait
	ch <- m.queueFull
}

func (m *socketMetrics) collect(ch chan<- prometheus.Metric, s *scrape) {
	m.collectStates(ch, s)
	m.collectCloseWait(ch, s)
	m.collectFullListeners(ch, s)
}

func (m *socketMetrics) collectStates(ch chan<- prometheus.Metric, s *scrape) {
	for st := tcpstate.First; st <= tcpstate.Last; st++ {
		if st == tcpstate.Close || st == tcpstate.NewSynRecv {
			continue // no socket stays in them
		}
		ch <- prometheus.MustNewConstMetric(m.sockets, prometheus.GaugeValue, float64(s.st.Sockets[st]), st.String())
	}
}

// owner is who the pressure metrics are by.
type owner struct {
	comm string
	who  workload
}

func (m *socketMetrics) ownerOf(known bool, comm string, id *identity.Identity) owner {
	o := owner{comm: commOf(known, comm)}
	if known && m.lab.workload {
		o.who = workloadOf(id)
	}
	return o
}

// collectCloseWait reports the CLOSE-WAIT leaks, summed by owner.
func (m *socketMetrics) collectCloseWait(ch chan<- prometheus.Metric, s *scrape) {
	cw := map[owner]int{}
	for _, l := range s.st.Pressure.CloseWait {
		cw[m.ownerOf(l.OwnerKnown, l.Comm, l.Owner)] += l.Count
	}
	for o, n := range cw {
		ch <- prometheus.MustNewConstMetric(m.closeWait, prometheus.GaugeValue, float64(n), m.lab.vals(o.who, o.comm)...)
	}
}

// collectFullListeners reports the listeners under pressure by port and
// owner: full if any of them is.
func (m *socketMetrics) collectFullListeners(ch chan<- prometheus.Metric, s *scrape) {
	type listener struct {
		port string
		owner
	}
	full := map[listener]bool{}
	for _, l := range s.st.Pressure.Listeners {
		k := listener{strconv.Itoa(int(l.Port)), m.ownerOf(l.OwnerKnown, l.Comm, l.Owner)}
		full[k] = full[k] || l.Full
	}
	for k, f := range full {
		ch <- prometheus.MustNewConstMetric(m.queueFull, prometheus.GaugeValue, b2f(f), m.lab.vals(k.who, k.port, k.comm)...)
	}
}
