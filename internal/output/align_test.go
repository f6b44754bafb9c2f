package output

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/owner/identity"
)

// checkColumns checks a table (its header, then its rows) for alignment:
// each row's cell of a left-aligned column starts where the header's
// name does, and that of a right-aligned (numeric) one ends where its
// name ends.
func checkColumns(t *testing.T, table string, lines []string, left, right []string) {
	t.Helper()
	if len(lines) < 2 {
		t.Fatalf("%s: no rows:\n%s", table, strings.Join(lines, "\n"))
	}
	col := func(name string) (int, int) {
		i := strings.Index(lines[0], name)
		if i < 0 {
			t.Fatalf("%s: no column %s in %q", table, name, lines[0])
		}
		start := len([]rune(lines[0][:i]))
		return start, start + len([]rune(name))
	}
	for _, l := range lines[1:] {
		row := []rune(l)
		at := func(i int) rune {
			if i < 0 || i >= len(row) {
				return ' '
			}
			return row[i]
		}
		for _, name := range left {
			start, _ := col(name)
			if at(start-1) != ' ' || at(start) == ' ' {
				t.Errorf("%s: column %s (at %d) does not start there in:\n%s\n%s", table, name, start, lines[0], l)
			}
		}
		for _, name := range right {
			_, end := col(name)
			if !unicode.IsDigit(at(end-1)) || at(end) != ' ' {
				t.Errorf("%s: column %s (ending at %d) does not end there in:\n%s\n%s", table, name, end, lines[0], l)
			}
		}
	}
}

// block is the lines of the table that follows the line title: up to
// the first empty line.
func block(t *testing.T, out, title string) []string {
	t.Helper()
	i := strings.Index(out, title+"\n")
	if i < 0 {
		t.Fatalf("no %s in:\n%s", title, out)
	}
	rest := out[i+len(title)+1:]
	if j := strings.Index(rest, "\n\n"); j >= 0 {
		rest = rest[:j]
	}
	return strings.Split(strings.TrimSuffix(rest, "\n"), "\n")
}

// TestSummaryAligned: the summary's tables keep their columns when a
// destination carries "in netns:NAME" or "in pod:...", and when an owner
// is a pod's process, long names both: every column is as wide as its
// widest cell.
func TestSummaryAligned(t *testing.T) {
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	names := map[uint32]string{7: "netns:socktrace-dns-21266-212014", 8: "host", 9: "pod:shop/checkout-7d9f8b6c5-x2x4z"}
	tb.SetNetnsNames(func(ino uint32) string { return names[ino] })
	pod := &identity.Identity{Namespace: "shop", Pod: "checkout-7d9f8b6c5-x2x4z", Container: "app"}
	dest := func(netns uint32, addr string, port uint16, comm string, id *identity.Identity, failing bool) analysis.Dest {
		d := analysis.Dest{DestKey: analysis.DestKey{Netns: netns, Addr: netip.MustParseAddr(addr), Port: port},
			OwnerKnown: true, PID: 4242, Comm: comm, Owner: id, Attempts: 12, Successes: 9, LastAttempt: otTime,
			LastSuccess: otTime, FirstAttempt: otTime}
		if failing {
			d.Failing, d.Streak, d.FailingSince, d.Successes = true, 3, otTime, 0
			d.Failures[analysis.Refused] = 12
			d.LastSuccess = time.Time{}
		}
		return d
	}
	s := &analysis.Summary{Time: otTime.Add(time.Minute), Since: otTime,
		Dests: []analysis.Dest{
			dest(7, "127.0.0.1", 9092, "java", nil, true),
			dest(8, "10.0.0.1", 5432, "psql", nil, false),
			dest(9, "127.0.0.1", 9093, "python3", pod, false),
			dest(8, "2001:db8::1", 443, "curl", nil, false),
		},
		Pressure: analysis.Pressure{CloseWaitAfter: 30 * time.Second,
			CloseWait: []analysis.CloseWaitLeak{
				{OwnerKnown: true, PID: 1, Comm: "nginx", Count: 2, Oldest: time.Minute,
					Peers: []analysis.Count{{Addr: netip.MustParseAddr("10.0.0.2"), Port: 40000, N: 2}}},
				{OwnerKnown: true, PID: 4242, Comm: "python3", Owner: pod, Count: 12, Oldest: time.Hour,
					Peers: []analysis.Count{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 40001, N: 12}}},
			},
			TimeWait: []analysis.Count{{Netns: 8, Addr: netip.MustParseAddr("10.0.0.1"), Port: 5432, N: 3},
				{Netns: 8, Addr: netip.MustParseAddr("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"), Port: 443, N: 120}},
			Listeners: []analysis.Listener{
				{Addr: netip.MustParseAddr("0.0.0.0"), Port: 80, OwnerKnown: true, PID: 1, Comm: "nginx", AcceptQ: 1, Backlog: 511},
				{Addr: netip.MustParseAddr("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"), Port: 9093, OwnerKnown: true, PID: 4242, Comm: "python3", Owner: pod, AcceptQ: 128, Backlog: 128, Full: true},
			}},
	}
	if err := tb.Summary(s); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	dests := block(t, out, "CONNECT ATTEMPTS BY DESTINATION")
	if !strings.Contains(out, "in netns:socktrace-dns-21266-212014") || !strings.Contains(out, "in pod:shop/checkout-7d9f8b6c5-x2x4z") {
		t.Fatalf("no namespace tags in:\n%s", out)
	}
	checkColumns(t, "destinations", dests, []string{"DESTINATION", "PROCESS", "SINCE"},
		[]string{"ATTEMPTS", "OK", "FAILED", "REFUSED", "TIMEOUT", "UNREACH", "ABORTED", "PENDING"})
	checkColumns(t, "close-wait", block(t, out, "CLOSE-WAIT FOR 30s OR LONGER (the peer closed; the application has not)"),
		[]string{"PEERS"}, []string{"SOCKETS"})
	checkColumns(t, "time-wait", block(t, out, "TIME-WAIT BY DESTINATION"), nil, []string{"SOCKETS"})
	checkColumns(t, "listeners", block(t, out, "LISTENERS UNDER PRESSURE"), []string{"PROCESS"},
		[]string{"ACCEPT-Q", "BACKLOG", "SYN-RECV"})

	// The same rows in the failures footer.
	buf.Reset()
	if err := tb.Failures(s.Dests, s.Time); err != nil {
		t.Fatal(err)
	}
	checkColumns(t, "failures", block(t, buf.String(), "CONNECT FAILURES BY DESTINATION (--summary for the whole picture)"),
		[]string{"DESTINATION", "PROCESS", "SINCE"}, []string{"ATTEMPTS", "OK", "FAILED", "REFUSED", "PENDING"})
}
