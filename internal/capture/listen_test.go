package capture

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/listeners"
	"github.com/socktrace/socktrace/internal/owner/identity"
)

// TestListenRoundTrip: a listener's samples (record type 13) read back
// as written, owner and identity included.
func TestListenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := &identity.Identity{Cgroup: "/system.slice/web.service", Unit: "web.service"}
	l := listeners.Listener{Netns: 4026531840, Addr: netip.MustParseAddr("127.0.0.1"), Port: 9093, Cookie: 77, Inode: 12345, Drops: 90, Backlog: 1, Queue: 2}
	l6 := l
	l6.Addr, l6.Cookie = netip.MustParseAddr("::"), 78
	want := []listeners.Sample{
		{At: t0, Listener: l, Baseline: true, Owner: listeners.Owner{Known: true, PID: 123, Comm: "python3", ID: id}},
		{At: t0.Add(time.Second), Listener: l6, Prev: 12},
		{At: t0.Add(2 * time.Second), Listener: l, Gone: true, Owner: listeners.Owner{Known: true, PID: 123, Comm: "python3"}},
	}
	for i := range want {
		if err := w.Listen(&want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, warns := readAll(t, []string{path})
	if len(warns) != 0 || len(recs) != len(want) {
		t.Fatalf("%d records, warnings %v", len(recs), warns)
	}
	for i, r := range recs {
		if r.Kind != KindListen {
			t.Fatalf("record %d: kind %d", i, r.Kind)
		}
		got := r.Listen
		got.At = got.At.In(want[i].At.Location())
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}
