package snapshot

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// unhex decodes hex with spaces and newlines, for readable golden bytes.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Golden bytes as the kernel sends them on little-endian machines.
const (
	// nlmsghdr: len 88, SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, seq 7, port 0
	estabV4Hdr = "58000000 1400 0200 07000000 00000000"
	// inet_diag_msg: AF_INET, ESTABLISHED, keepalive timer, 1 retransmit,
	// 10.0.0.1:8080 -> 10.0.0.2:43512, if 3, cookie 0x1_0000_0262,
	// expires 7200000 ms, rqueue 5, wqueue 16, uid 1000, inode 590
	estabV4Msg = `02 01 02 01  1f90 a9f8
		0a000001 00000000 00000000 00000000
		0a000002 00000000 00000000 00000000
		03000000  62020000 01000000
		00dd6d00 05000000 10000000 e8030000 4e020000`
	// AF_INET6 listener on [::ffff:127.0.0.1]:9092, peer [::]:0,
	// backlog 4096 in wqueue, 2 waiting in rqueue, seq 7
	listenV6Hdr = "58000000 1400 0200 07000000 00000000"
	listenV6Msg = `0a 0a 00 00  2384 0000
		00000000 00000000 0000ffff 7f000001
		00000000 00000000 00000000 00000000
		00000000  0a000000 00000000
		00000000 02000000 00100000 00000000 07000000`
	// NLMSG_DONE, NLM_F_MULTI, seq 7, payload 0
	doneMsg = "14000000 0300 0200 07000000 00000000 00000000"
)

func TestEncodeRequest(t *testing.T) {
	got := encodeRequest(unix.AF_INET6, tcpstate.MaskOf(tcpstate.SynSent, tcpstate.Listen), 9, 0)
	want := unhex(t, `48000000 1400 0103 09000000 00000000
		0a 06 00 00 04040000
		00000000 00000000 00000000 00000000 00000000 00000000
		00000000 00000000 00000000 00000000 00000000 00000000`)
	if string(got) != string(want) {
		t.Errorf("request\ngot  %x\nwant %x", got, want)
	}
}

func TestParseReplies(t *testing.T) {
	b := unhex(t, estabV4Hdr+estabV4Msg+listenV6Hdr+listenV6Msg+doneMsg)
	var got []Socket
	done, intr, err := parseReplies(b, 7, func(s *Socket) error {
		got = append(got, *s)
		return nil
	})
	if err != nil || !done || intr {
		t.Fatalf("done=%v interrupted=%v err=%v", done, intr, err)
	}
	want := []Socket{
		{Family: unix.AF_INET, State: tcpstate.Established, Timer: TimerKeepalive, Retrans: 1,
			Src: netip.MustParseAddr("10.0.0.1"), SPort: 8080, Dst: netip.MustParseAddr("10.0.0.2"), DPort: 43512,
			IfIndex: 3, Cookie: 0x1_0000_0262, Expires: 2 * time.Hour, RecvQ: 5, SendQ: 16, UID: 1000, Inode: 590, V6Only: -1},
		{Family: unix.AF_INET6, State: tcpstate.Listen,
			Src: netip.MustParseAddr("127.0.0.1"), SPort: 9092, Dst: netip.IPv6Unspecified(),
			Cookie: 10, RecvQ: 2, SendQ: 4096, Inode: 7, V6Only: -1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sockets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d\ngot  %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestAttributes: what the kernel adds unasked (ss -e's fields) and the
// congestion control (ss -i).
func TestAttributes(t *testing.T) {
	attrs := `05000800 03000000` + // INET_DIAG_SHUTDOWN: both directions
		`05000b00 01000000` + // INET_DIAG_SKV6ONLY: 1
		`08000f00 2a000000` + // INET_DIAG_MARK: 42
		`0c001500 e8030000 00000000` + // INET_DIAG_CGROUP_ID: 1000
		`0a000400 63756269 6300 0000` // INET_DIAG_CONG: "cubic"
	msg := unhex(t, estabV4Msg+attrs)
	var s Socket
	if err := decodeMsg(msg, &s); err != nil {
		t.Fatal(err)
	}
	if !s.ShutdownKnown || s.Shutdown != 3 || s.V6Only != 1 || !s.MarkKnown || s.Mark != 42 || s.CgroupID != 1000 || s.Cong != "cubic" {
		t.Errorf("attributes decoded as %+v", s)
	}
	if err := decodeMsg(unhex(t, estabV4Msg), &s); err != nil || s.ShutdownKnown || s.V6Only != -1 || s.MarkKnown || s.CgroupID != 0 || s.Cong != "" {
		t.Errorf("without attributes: %+v %v", s, err)
	}
}

func TestParseRepliesSplitAcrossReads(t *testing.T) {
	// The first read ends without NLMSG_DONE: not done yet.
	done, _, err := parseReplies(unhex(t, estabV4Hdr+estabV4Msg), 7, func(*Socket) error { return nil })
	if err != nil || done {
		t.Fatalf("done=%v err=%v, want not done", done, err)
	}
}

func TestParseRepliesInterrupted(t *testing.T) {
	hdr := "58000000 1400 1200 07000000 00000000" // NLM_F_MULTI|NLM_F_DUMP_INTR
	_, intr, err := parseReplies(unhex(t, hdr+estabV4Msg+doneMsg), 7, func(*Socket) error { return nil })
	if err != nil || !intr {
		t.Fatalf("interrupted=%v err=%v, want interrupted", intr, err)
	}
}

func TestParseRepliesSkipsOtherSeq(t *testing.T) {
	n := 0
	done, _, err := parseReplies(unhex(t, estabV4Hdr+estabV4Msg+doneMsg), 8, func(*Socket) error { n++; return nil })
	if err != nil || done || n != 0 {
		t.Fatalf("stale replies were used: done=%v n=%d err=%v", done, n, err)
	}
}

func TestParseRepliesErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"netlink error", "24000000 0200 0000 07000000 00000000 edffffff" + strings.Repeat("00", 16), "sock_diag"},
		{"truncated message", "58000000 1400 0200 07000000 00000000 0201", "malformed"},
		{"short inet_diag_msg", "18000000 1400 0200 07000000 00000000 02010000 00000000", "want at least 72"},
		{"unknown family", "58000000 1400 0200 07000000 00000000 07" + strings.Repeat("00", 71), "family 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseReplies(unhex(t, tt.in), 7, func(*Socket) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// The errno is kept.
	_, _, err := parseReplies(unhex(t, tests[0].in), 7, func(*Socket) error { return nil })
	if !errors.Is(err, unix.ENODEV) {
		t.Errorf("got %v, want ENODEV (errno 19)", err)
	}
}

func TestTimerString(t *testing.T) {
	for tm, want := range map[Timer]string{TimerNone: "", TimerOn: "on", TimerKeepalive: "keepalive", TimerTimewait: "timewait", TimerPersist: "persist", 9: "timer9"} {
		if got := tm.String(); got != want {
			t.Errorf("%d: %q, want %q", tm, got, want)
		}
	}
}
