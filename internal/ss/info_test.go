package ss

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/snapshot"
)

// TestCongInfo: the congestion controls' own items as ss 6.1's
// tcp_stats_print writes them (kernels without vegas or dctcp, like this
// host's, leave them out of TestSSInfo): dctcp's, its fallback, vegas's
// rtt sizing "send", bbr's gains left out when 0.
func TestCongInfo(t *testing.T) {
	info := unix.TCPInfo{Rtt: 1000, Snd_mss: 1000, Snd_cwnd: 10, Reordering: 3}
	for _, c := range []struct {
		name string
		ci   *snapshot.CongInfo
		want string
	}{
		{"none", nil, " cwnd:10 send 80Mbps"},
		{"dctcp", &snapshot.CongInfo{Kind: snapshot.CongDCTCP, V: [5]uint32{1 | 1<<16, 1024, 5, 7}},
			" cwnd:10 dctcp:(ce_state:1,alpha:1024,ab_ecn:5,ab_tot:7) send 80Mbps"},
		{"dctcp fallback", &snapshot.CongInfo{Kind: snapshot.CongDCTCP}, " cwnd:10 dctcp:fallback_mode send 80Mbps"},
		{"vegas rtt", &snapshot.CongInfo{Kind: snapshot.CongVegas, V: [5]uint32{1, 3, 2000, 1500}}, " cwnd:10 send 40Mbps"},
		{"vegas off", &snapshot.CongInfo{Kind: snapshot.CongVegas, V: [5]uint32{0, 3, 2000, 1500}}, " cwnd:10 send 80Mbps"},
		{"vegas no rtt", &snapshot.CongInfo{Kind: snapshot.CongVegas, V: [5]uint32{1, 3, 0x7fffffff, 1500}}, " cwnd:10 send 80Mbps"},
		{"bbr", &snapshot.CongInfo{Kind: snapshot.CongBBR, V: [5]uint32{125000, 0, 1500, 739, 512}},
			" cwnd:10 bbr:(bw:1Mbps,mrtt:1.5,pacing_gain:2.88672,cwnd_gain:2) send 80Mbps"},
		{"bbr no gains", &snapshot.CongInfo{Kind: snapshot.CongBBR, V: [5]uint32{0, 1, 20}},
			" cwnd:10 bbr:(bw:34.4Gbps,mrtt:0.02) send 80Mbps"},
	} {
		var b strings.Builder
		i := info
		writeInfo(&b, &snapshot.Socket{Info: &i, CongInfo: c.ci}, &Options{})
		// rtt:1/0 is there for all: keep what follows it.
		got := b.String()[strings.Index(b.String(), " cwnd:"):]
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
