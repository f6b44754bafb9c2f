package metrics

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/pipeline"
)

// oneScrape is a collector that reports one family from a given state.
type oneScrape struct {
	f  family
	st *pipeline.State
}

func (o oneScrape) Describe(ch chan<- *prometheus.Desc) { o.f.describe(ch) }
func (o oneScrape) Collect(ch chan<- prometheus.Metric) { o.f.collect(ch, &scrape{st: o.st}) }

// TestListenDropsCounter: the counter adds each listener's drops since
// the last scrape: it never goes down when a listener is forgotten, and
// label sets beyond the bound fold into sport="other".
func TestListenDropsCounter(t *testing.T) {
	m := newListenMetrics(Options{MaxDestinations: 2}, labeller{})
	lo := netip.MustParseAddr("127.0.0.1")
	l := func(port uint16, cookie, total uint64, comm string) listeners.State {
		return listeners.State{Listener: listeners.Listener{Netns: 1, Addr: lo, Port: port, Cookie: cookie},
			Owner: listeners.Owner{Known: comm != "", Comm: comm}, Total: total}
	}
	for i, c := range []struct {
		ls   []listeners.State
		want map[string]int
	}{
		{[]listeners.State{l(9093, 1, 90, "python3")}, map[string]int{`comm="python3",sport="9093"`: 90}},
		{[]listeners.State{l(9093, 1, 100, "python3"), l(9094, 2, 5, "")}, map[string]int{`comm="python3",sport="9093"`: 100, `comm="unknown",sport="9094"`: 5}},
		// The first listener forgotten, a new one on its port: added.
		{[]listeners.State{l(9093, 3, 7, "python3")}, map[string]int{`comm="python3",sport="9093"`: 107, `comm="unknown",sport="9094"`: 5}},
		// A third label set: folded.
		{[]listeners.State{l(9095, 4, 3, "java")}, map[string]int{`comm="python3",sport="9093"`: 107, `comm="unknown",sport="9094"`: 5, `comm="other",sport="other"`: 3}},
	} {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(oneScrape{m, &pipeline.State{Listeners: c.ls}})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, mf := range mfs {
			for _, x := range mf.GetMetric() {
				var ls []string
				for _, p := range x.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
				}
				got[strings.Join(ls, ",")] = int(x.GetCounter().GetValue())
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("scrape %d: %v, want %v", i, got, c.want)
		}
	}
}
