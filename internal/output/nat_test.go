package output

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// TestNATBackends: a destination NAT translated shows its backend on the
// transition's line (peer->backend), and its failing alert names the
// backend that fails and the one that answers, in the table and in JSON.
func TestNATBackends(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	dead, live := netip.MustParseAddrPort("10.4.1.81:9092"), netip.MustParseAddrPort("10.4.1.82:9092")

	tr := otTransition()
	tr.Old, tr.New, tr.Dst, tr.DPort, tr.Actual = tcpstate.SynSent, tcpstate.Established, vip, 9092, live
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	if err := tb.Transition(&tr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), " 10.96.0.10:9092->10.4.1.82:9092 ") {
		t.Errorf("the line lacks the peer's backend:\n%s", buf)
	}

	d := analysis.Dest{DestKey: analysis.DestKey{Netns: 1, Addr: vip, Port: 9092}, Attempts: 10, Successes: 5, Failing: true,
		Backends: []analysis.Backend{
			{Addr: dead, Attempts: 5, Failures: [5]uint64{analysis.Timeout: 5}, Streak: 5, Failing: true, LastOutcome: analysis.Timeout},
			{Addr: live, Attempts: 5, Successes: 5, LastOutcome: analysis.Established}}}
	d.Failures[analysis.Timeout] = 5
	a := &analysis.Alert{Kind: analysis.TurnedFailing, Time: otTime, Dest: d}
	tb, buf = otTable(&errw)
	if err := tb.Alert(a); err != nil {
		t.Fatal(err)
	}
	if want := "!! FAILING 10.96.0.10:9092 fails through 10.4.1.81:9092: 5 of 5 timed out; 10.4.1.82:9092 answered 5 of 5 ("; !strings.Contains(buf.String(), want) {
		t.Errorf("alert line\n%s\nlacks %q", buf, want)
	}

	var jb otBuffer
	if err := NewJSON(&jb).Alert(a); err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Backends []map[string]any `json:"backends"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(jb.Bytes()), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Backends) != 2 {
		t.Fatalf("backends %v in %s", rec.Backends, jb.Bytes())
	}
	b0, b1 := rec.Backends[0], rec.Backends[1]
	if b0["actual_daddr"] != "10.4.1.81" || b0["actual_dport"] != 9092.0 || b0["status"] != "failing" || b0["failures"].(map[string]any)["timeout"] != 5.0 ||
		b1["actual_daddr"] != "10.4.1.82" || b1["status"] != "ok" || b1["successes"] != 5.0 {
		t.Errorf("backends %v", rec.Backends)
	}
}
