package pipeline

import (
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// answer is a DNS answer for name with addrs, TTL ttl.
func answer(t testing.TB, name string, ttl uint32, addrs ...string) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	for _, a := range addrs {
		b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name + "."), Class: dnsmessage.ClassINET, TTL: ttl},
			dnsmessage.AResource{A: netip.MustParseAddr(a).As4()})
	}
	m, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// replayJSON replays path and returns the JSON records.
func replayJSON(t *testing.T, path string) []map[string]any {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	err = Read(&Options{Output: "json", History: 100}, []string{path})
	os.Stdout = stdout
	w.Close()
	out := <-done
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestStaleReasons: a failed attempt to an address its name moved away
// from raises stale-dns (failing); a new attempt long after the TTL, by a
// process that never re-resolved, raises it too (expired); attempts to
// the current address, or while the name still holds the address, raise
// none.
func TestStaleReasons(t *testing.T) {
	base := time.Unix(1e9, 0)
	at := func(s int) (time.Time, uint64) { return base.Add(time.Duration(s) * time.Second), uint64(s) * 1e9 }
	path := filepath.Join(t.TempDir(), "cap")
	w, err := capture.Create(path, capture.Header{Host: "h", BootTime: base, Started: base}, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dns := func(s int, pid uint32, addrs ...string) {
		o := dnscache.Observation{Netns: 5, PID: pid, Comm: "app", Server: netip.MustParseAddrPort("127.0.0.53:53"),
			Msg: answer(t, "kafka.example", 60, addrs...)}
		o.At, o.K = at(s)
		if err := w.DNS(&o); err != nil {
			t.Fatal(err)
		}
	}
	tr := func(s int, cookie uint64, pid uint32, dst string, old, new tcpstate.State, skErr uint16) {
		x := record.Transition{Transition: events.Transition{Cookie: cookie, Netns: 5, Family: unix.AF_INET, Src: netip.MustParseAddr("10.0.0.1"),
			Dst: netip.MustParseAddr(dst), SPort: 40000 + uint16(cookie), DPort: 9092, Old: old, New: new, SkErr: skErr,
			OwnerKnown: true, OwnerPID: pid, OwnerTID: pid, OwnerComm: "app"}}
		x.Time, x.Ktime = at(s)
		if err := w.Transition(&x); err != nil {
			t.Fatal(err)
		}
	}
	C, S, E := tcpstate.Close, tcpstate.SynSent, tcpstate.Established
	dns(1, 7, "10.4.1.80")
	dns(1, 9, "10.4.1.80")
	tr(2, 1, 7, "10.4.1.80", C, S, 0)
	tr(3, 1, 7, "10.4.1.80", S, C, uint16(unix.ETIMEDOUT)) // the name still holds it: no alert
	dns(10, 8, "10.4.1.81")                                // someone else resolves: moved
	tr(11, 2, 8, "10.4.1.81", C, S, 0)
	tr(12, 2, 8, "10.4.1.81", S, E, 0) // the current address: no alert
	tr(13, 3, 7, "10.4.1.80", C, S, 0)
	tr(14, 3, 7, "10.4.1.80", S, C, uint16(unix.ETIMEDOUT)) // stale: failing
	tr(15, 4, 7, "10.4.1.80", C, S, 0)
	tr(16, 4, 7, "10.4.1.80", S, C, uint16(unix.ETIMEDOUT)) // same evidence: no second alert
	tr(100, 5, 9, "10.4.1.80", C, S, 0)                     // TTL 60 ran out 39 s ago: not yet "long"
	tr(101, 5, 9, "10.4.1.80", S, E, 0)
	tr(200, 6, 9, "10.4.1.80", C, S, 0) // 139 s after the TTL ran out: expired
	tr(201, 6, 9, "10.4.1.80", S, E, 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, r := range replayJSON(t, path) {
		if r["type"] == "alert" && r["alert"] == "stale-dns" {
			cur, _ := r["current_addrs"].([]any)
			alerts = append(alerts, strings.Join([]string{r["reason"].(string), r["daddr"].(string), r["dns_name"].(string),
				r["resolved_at"].(string), r["current_seen_by"].(string), cur[0].(string)}, " "))
			if int(r["pid"].(float64)) != 7 && int(r["pid"].(float64)) != 9 {
				t.Errorf("alert for pid %v", r["pid"])
			}
		}
		if r["type"] == "transition" {
			want := "kafka.example"
			if r["dns_name"] != want {
				t.Errorf("transition without its name: %v", r)
			}
		}
	}
	want := []string{
		"failing 10.4.1.80 kafka.example 2001-09-09T01:46:41.000000000Z app/8 10.4.1.81",
		"expired 10.4.1.80 kafka.example 2001-09-09T01:46:41.000000000Z app/8 10.4.1.81",
	}
	if strings.Join(alerts, "\n") != strings.Join(want, "\n") {
		t.Errorf("stale-dns alerts:\n%s\nwant\n%s", strings.Join(alerts, "\n"), strings.Join(want, "\n"))
	}
}
