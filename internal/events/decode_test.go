package events

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

func rawEvent(e socktraceEvent) []byte {
	b := make([]byte, EventSize)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&e)), EventSize))
	return b
}

func comm(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		c[i] = int8(s[i])
	}
	return c
}

func TestEventLayout(t *testing.T) {
	// bpf/socktrace.h promises 192 bytes; the ring buffer sizing relies
	// on it.
	if EventSize != 192 {
		t.Fatalf("event is %d bytes, want 192 (bpf/socktrace.h)", EventSize)
	}
}

func TestDecode(t *testing.T) {
	v6 := netip.MustParseAddr("fd00::1").As16()
	mapped := netip.MustParseAddr("::ffff:10.1.2.3").As16()
	tests := []struct {
		name string
		in   socktraceEvent
		want Transition
	}{
		{
			name: "ipv4 owner known",
			in: socktraceEvent{TsNs: 5, Cookie: 42, Skaddr: 0xffff1, PrevNs: 1500, Netns: 4026531840,
				Pid: 0, Tid: 0, OwnerPid: 77, OwnerTid: 78, Uid: 1000, Family: unix.AF_INET,
				Sport: 43512, Dport: 9092, SkErr: 111, Oldstate: 2, Newstate: 7,
				Flags: flagOwnerKnown | flagPrevKnown | flagCookieHelper,
				Saddr: [16]uint8{10, 0, 0, 1}, Daddr: [16]uint8{10, 0, 0, 2},
				Comm: comm("swapper/1"), OwnerComm: comm("kafka-producer")},
			want: Transition{Ktime: 5, Cookie: 42, SkAddr: 0xffff1, Netns: 4026531840, Family: unix.AF_INET,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				SPort: 43512, DPort: 9092, Old: tcpstate.SynSent, New: tcpstate.Close,
				InOld: 1500 * time.Nanosecond, InOldKnown: true, TaskComm: "swapper/1",
				OwnerKnown: true, OwnerPID: 77, OwnerTID: 78, OwnerComm: "kafka-producer",
				UID: 1000, SkErr: 111, CookieFromHelper: true},
		},
		{
			name: "ipv6 owner unknown hides owner fields",
			in: socktraceEvent{Family: unix.AF_INET6, Saddr: v6, Daddr: v6, Oldstate: 1, Newstate: 8,
				Pid: 9, Tid: 9, Comm: comm("nginx"), OwnerPid: 5, OwnerComm: comm("stale")},
			want: Transition{Family: unix.AF_INET6, Src: netip.AddrFrom16(v6), Dst: netip.AddrFrom16(v6),
				Old: tcpstate.Established, New: tcpstate.CloseWait, TaskPID: 9, TaskTID: 9, TaskComm: "nginx"},
		},
		{
			name: "v4-mapped shown as ipv4",
			in:   socktraceEvent{Family: unix.AF_INET6, Saddr: mapped, Daddr: mapped, Oldstate: 7, Newstate: 2},
			want: Transition{Family: unix.AF_INET6, Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("10.1.2.3"),
				Old: tcpstate.Close, New: tcpstate.SynSent},
		},
		{
			name: "drops on the socket",
			in: socktraceEvent{Family: unix.AF_INET, Oldstate: 2, Newstate: 7, Drops: 6, DropReason: 12,
				DropDir: 1},
			want: Transition{Family: unix.AF_INET, Src: netip.AddrFrom4([4]byte{}), Dst: netip.AddrFrom4([4]byte{}),
				Old: tcpstate.SynSent, New: tcpstate.Close, Drops: 6, DropReason: 12, DropDir: DropSent},
		},
		{
			name: "no drops: reason and direction ignored",
			in:   socktraceEvent{Family: unix.AF_INET, DropReason: 12, DropDir: 2},
			want: Transition{Family: unix.AF_INET, Src: netip.AddrFrom4([4]byte{}), Dst: netip.AddrFrom4([4]byte{})},
		},
		{
			name: "comm of full length",
			in:   socktraceEvent{Family: unix.AF_INET, Comm: comm("123456789012345")},
			want: Transition{Family: unix.AF_INET, Src: netip.AddrFrom4([4]byte{}), Dst: netip.AddrFrom4([4]byte{}), TaskComm: "123456789012345"},
		},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Transition
			if err := d.Decode(rawEvent(tt.in), &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	d := NewDecoder()
	var tr Transition
	if err := d.Decode(make([]byte, EventSize-1), &tr); !errors.Is(err, ErrShortRecord) {
		t.Errorf("short record: got %v, want ErrShortRecord", err)
	}
	if err := d.Decode(rawEvent(socktraceEvent{Family: 1}), &tr); err == nil {
		t.Error("unknown family: no error")
	}
}

func TestDecodeAllocs(t *testing.T) {
	d := NewDecoder()
	raw := rawEvent(socktraceEvent{Family: unix.AF_INET, Comm: comm("curl"), OwnerComm: comm("curl"), Flags: flagOwnerKnown})
	var tr Transition
	d.Decode(raw, &tr)
	if n := testing.AllocsPerRun(100, func() { d.Decode(raw, &tr) }); n != 0 {
		t.Errorf("Decode allocates %v times per record once names are known, want 0", n)
	}
}

func TestAttachErrorShowsVerifierTail(t *testing.T) {
	var log []string
	for i := 0; i < 30; i++ {
		log = append(log, "line "+string(rune('a'+i%26)))
	}
	log[29] = "R1 invalid mem access 'scalar'"
	ve := &ebpf.VerifierError{Cause: unix.EACCES, Log: log}
	err := attachError([]string{"tp_btf: " + summarize(ve)}, ve)
	if !errors.Is(err, ErrAttach) {
		t.Errorf("error does not wrap ErrAttach: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"verifier rejected", "R1 invalid mem access 'scalar'", "uname -r"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Count(msg, "\n  line ") != verifierTail-1 {
		t.Errorf("want the last %d log lines:\n%s", verifierTail, msg)
	}
}

func TestKernelBTFErrors(t *testing.T) {
	_, err := kernelBTF("/nonexistent/vmlinux")
	if !errors.Is(err, ErrNoBTF) || !strings.Contains(err.Error(), "--kernel-btf /nonexistent/vmlinux") {
		t.Errorf("missing --kernel-btf file: got %v", err)
	}
}

func TestRingSize(t *testing.T) {
	for _, n := range []int{4096, 8 << 20} {
		if err := checkRingSize(n); err != nil {
			t.Errorf("%d: %v", n, err)
		}
	}
	for _, n := range []int{0, 100, 4096 + 1, 3 << 20} {
		if err := checkRingSize(n); err == nil {
			t.Errorf("%d: accepted", n)
		}
	}
}
