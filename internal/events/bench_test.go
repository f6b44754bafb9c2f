package events

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// benchRecords are raw ring buffer records as the BPF program writes
// them: an IPv4 transition in softirq with its owner known (the common
// case under churn), and an IPv6 one from a task.
func benchRecords() map[string][]byte {
	v6 := netip.MustParseAddr("fd00::1").As16()
	return map[string][]byte{
		"ipv4": rawEvent(socktraceEvent{TsNs: 2022854257691, Cookie: 86151, Skaddr: 0xffff888106a240c0,
			PrevNs: 119000, Netns: 4026532246, OwnerPid: 7355, OwnerTid: 7356, Uid: 0, Family: unix.AF_INET,
			Sport: 43512, Dport: 7777, Oldstate: 2, Newstate: 1,
			Flags: flagOwnerKnown | flagPrevKnown | flagCookieHelper,
			Saddr: [16]uint8{127, 0, 0, 1}, Daddr: [16]uint8{127, 77, 0, 1},
			Comm: comm("swapper/1"), OwnerComm: comm("bench-loadgen")}),
		"ipv6": rawEvent(socktraceEvent{TsNs: 2022854257691, Cookie: 86152, Skaddr: 0xffff888106a24000,
			Netns: 4026531840, Pid: 900, Tid: 901, Family: unix.AF_INET6, Sport: 443, Dport: 50000,
			Oldstate: 10, Newstate: 3, Flags: flagCookieHelper, Saddr: v6, Daddr: v6, Comm: comm("nginx")}),
	}
}

// BenchmarkDecode measures turning one raw record into a Transition,
// once the comm names are known (as they are after the first records).
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"ipv4", "ipv6"} {
		raw := benchRecords()[name]
		b.Run(name, func(b *testing.B) {
			d := NewDecoder()
			var t Transition
			if err := d.Decode(raw, &t); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Decode(raw, &t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
