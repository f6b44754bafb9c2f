package metrics

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// natSeries collects m: the value of each series, by its labels in the
// order daddr, dport, actual_daddr, actual_dport, outcome.
func natSeries(t *testing.T, m *natMetrics) map[[5]string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1000)
	m.collect(ch, nil)
	close(ch)
	out := map[[5]string]float64{}
	for x := range ch {
		var d dto.Metric
		if err := x.Write(&d); err != nil {
			t.Fatal(err)
		}
		l := map[string]string{}
		for _, p := range d.Label {
			l[p.GetName()] = p.GetValue()
		}
		out[[5]string{l["daddr"], l["dport"], l["actual_daddr"], l["actual_dport"], l["outcome"]}] = d.Counter.GetValue()
	}
	return out
}

// TestNATMetrics: attempts count by backend and outcome; untranslated
// ones not at all; beyond the bound, label sets fold into "other" and a
// set once given its own series keeps it.
func TestNATMetrics(t *testing.T) {
	m := newNATMetrics(Options{MaxDestinations: 2})
	end := func(dst, actual string, state tcpstate.State, err unix.Errno) {
		d := netip.MustParseAddrPort(dst)
		tr := record.Transition{Transition: events.Transition{Dst: d.Addr(), DPort: d.Port(), Old: tcpstate.SynSent, New: state, SkErr: uint16(err)}}
		if actual != "" {
			tr.Actual = netip.MustParseAddrPort(actual)
		}
		m.ended(&tr)
	}
	vip, dead, live := "10.96.0.10:9092", "10.4.1.81:9092", "10.4.1.82:9092"
	for range 3 {
		end(vip, dead, tcpstate.Close, unix.ETIMEDOUT)
		end(vip, live, tcpstate.Established, 0)
	}
	end(vip, live, tcpstate.Close, unix.ECONNREFUSED)
	end("10.0.0.1:80", "", tcpstate.Established, 0) // nothing translated it
	end("10.96.0.11:53", "10.4.2.1:53", tcpstate.Established, 0)
	end("10.96.0.11:53", "10.4.2.1:53", tcpstate.Close, unix.EHOSTUNREACH)
	end(vip, dead, tcpstate.Close, 0) // the application gave up

	got := natSeries(t, m)
	tests := []struct {
		labels [5]string
		want   float64
	}{
		{[5]string{"10.96.0.10", "9092", "10.4.1.81", "9092", "timeout"}, 3},
		{[5]string{"10.96.0.10", "9092", "10.4.1.81", "9092", "aborted"}, 1},
		{[5]string{"10.96.0.10", "9092", "10.4.1.81", "9092", "established"}, 0},
		{[5]string{"10.96.0.10", "9092", "10.4.1.82", "9092", "established"}, 3},
		{[5]string{"10.96.0.10", "9092", "10.4.1.82", "9092", "refused"}, 1},
		{[5]string{Other, Other, Other, Other, "established"}, 1},
		{[5]string{Other, Other, Other, Other, "unreachable"}, 1},
	}
	for _, tc := range tests {
		if v, ok := got[tc.labels]; !ok || v != tc.want {
			t.Errorf("%v = %v (present %v), want %v", tc.labels, v, ok, tc.want)
		}
	}
	if len(got) != 3*len(outcomeNames) {
		t.Errorf("%d series, want %d (two backends and other, by outcome): %v", len(got), 3*len(outcomeNames), got)
	}
}
