package output

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/procs"
)

// FuzzTableLines: whatever a process names itself, and whatever its
// cgroup, pod or network namespace are called, every table line stays
// one line with no control character: the text writers escape it (the
// issue's case: prctl(PR_SET_NAME, "\x1b[2J\x1b[31mEV\nIL")).
func FuzzTableLines(f *testing.F) {
	f.Add("\x1b[2J\x1b[31mEV\nIL", "pod\nx", "unit\x1b]0;t\x07", "ns\r")
	f.Add("java", "checkout", "payments.service", "shop")
	f.Add("\xff\xfe", "\u202e", "\u2028", "\x00")
	render := func(t testing.TB, comm, pod, unit, ns string) string {
		var errw bytes.Buffer
		tb, buf := otTable(&errw)
		tb.SetNetnsNames(func(uint32) string { return "pod:" + ns + "/" + pod })
		tr := otTransition()
		tr.OwnerComm, tr.TaskComm = comm, comm
		tr.OwnerID = &identity.Identity{Cgroup: "/" + unit, Unit: unit, Namespace: ns, Pod: pod, ContainerID: comm, Container: pod}
		// A DNS name is whatever an answer said (a label may hold any byte).
		tr.DNS = &dnscache.Origin{Name: pod + "." + unit, Comm: comm, PID: 1, At: otTime, TTL: 60}
		row := otRow()
		row.OwnerComm, row.OwnerID = comm, tr.OwnerID
		row.Users = []procs.Owner{{PID: 1, Comm: comm, FD: 3}}
		row.DNS = tr.DNS
		d := analysis.Dest{DestKey: analysis.DestKey{Netns: 7, Addr: netip.MustParseAddr("10.0.0.1"), Port: 9092},
			OwnerKnown: true, PID: 1, Comm: comm, Owner: tr.OwnerID, Failing: true, Streak: 3,
			LastAttempt: otTime, FailingSince: otTime, Attempts: 3, DNS: tr.DNS}
		d.Failures[analysis.Refused] = 3
		for _, write := range []func() error{
			func() error { return tb.Transition(&tr) },
			func() error { return tb.Socket(&row, otTime) },
			func() error { return tb.Alert(&analysis.Alert{Kind: analysis.TurnedFailing, Time: otTime, Dest: d}) },
			func() error {
				return tb.Alert(&analysis.Alert{Kind: analysis.StaleDNS, Time: otTime, Dest: d, Stale: &analysis.Stale{Origin: tr.DNS,
					Current: &dnscache.Resolution{Name: tr.DNS.Name, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, At: otTime, PID: 2, Comm: comm},
					Reason:  "failing"}})
			},
		} {
			if err := write(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tb.Failures([]analysis.Dest{d}, otTime.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	// As many lines as plain names give.
	want := strings.Count(render(f, "a", "b", "c", "d"), "\n")
	f.Fuzz(func(t *testing.T, comm, pod, unit, ns string) {
		out := render(t, comm, pod, unit, ns)
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			for _, r := range l {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || r == 0x202e {
					t.Fatalf("a table line holds %U:\n%q", r, l)
				}
			}
		}
		if n := strings.Count(out, "\n"); n != want {
			t.Fatalf("%d lines, want %d:\n%s", n, want, out)
		}
	})
}
