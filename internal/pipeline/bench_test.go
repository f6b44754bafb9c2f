package pipeline

import (
	"bufio"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// churnRecords are the ten transitions of one loopback connection as the
// tracer gives them under the bench's churn (client and server, the
// server closing first), for connection i.
func churnRecords(i int, recs *[10]events.Record) {
	const netns = 4026532178
	base := uint64(1_000_000_000 + i*100_000)
	cli, srv := uint64(2*i+1000), uint64(2*i+1001)
	cport := uint16(10000 + i%50000)
	lo, lis := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.77.0.1")
	steps := [10]struct {
		cookie   uint64
		old, new tcpstate.State
		server   bool
	}{
		{cli, tcpstate.Close, tcpstate.SynSent, false},
		{srv, tcpstate.Listen, tcpstate.SynRecv, true},
		{cli, tcpstate.SynSent, tcpstate.Established, false},
		{srv, tcpstate.SynRecv, tcpstate.Established, true},
		{srv, tcpstate.Established, tcpstate.FinWait1, true},
		{cli, tcpstate.Established, tcpstate.CloseWait, false},
		{srv, tcpstate.FinWait1, tcpstate.FinWait2, true},
		{cli, tcpstate.CloseWait, tcpstate.LastAck, false},
		{srv, tcpstate.FinWait2, tcpstate.Close, true},
		{cli, tcpstate.LastAck, tcpstate.Close, false},
	}
	for k, s := range steps {
		t := &recs[k].Transition
		*t = events.Transition{
			Ktime: base + uint64(k)*7_000, Cookie: s.cookie, Netns: netns, Family: unix.AF_INET,
			Src: lo, Dst: lis, SPort: cport, DPort: 7777, Old: s.old, New: s.new,
			InOld: 7 * time.Microsecond, InOldKnown: k > 1,
			TaskPID: 4242, TaskTID: 4243 + uint32(i%2), TaskComm: "bench-loadgen",
			OwnerKnown: true, OwnerPID: 4242, OwnerTID: 4243 + uint32(i%2), OwnerComm: "bench-loadgen",
			CookieFromHelper: true,
		}
		if s.server {
			t.Src, t.Dst, t.SPort, t.DPort = lis, lo, 7777, cport
		}
		if s.new == tcpstate.Close || s.old == tcpstate.SynSent {
			t.TCPStats, t.SegsOut, t.SegsIn, t.SRTT = true, 4, 4, 20*time.Microsecond
		}
		t.Time = time.Unix(0, int64(1_790_000_000_000_000_000+t.Ktime))
	}
}

// BenchmarkChurnJSON measures socktrace -o json's work for one transition
// after the tracer decoded it: timeline, analysis, DNS names, filter and
// the JSON record, into a buffered writer that discards (the write
// system call is not in it). A connection's ten transitions per 10 ops.
func BenchmarkChurnJSON(b *testing.B) {
	o := &Options{Output: "json"}
	p := newPipeline(o, time.Unix(1_790_000_000, 0), 1_000_000_000)
	p.stdout = bufio.NewWriterSize(io.Discard, 64<<10)
	p.w = output.NewJSON(p.stdout)
	p.dns = newDNSNames(dnscache.Options{})
	var recs [10]events.Record
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	b.ResetTimer()
	for i := 0; i < b.N; i += 10 {
		churnRecords(i/10, &recs)
		for k := range recs {
			if i+k >= b.N {
				break
			}
			if err := p.event(&recs[k]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	// Allocations are per socket (its row), not per transition: finer
	// than allocs/op shows.
	b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(b.N), "allocs/transition")
}
