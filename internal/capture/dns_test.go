package capture

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
)

func TestDNSRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []dnscache.Observation{
		{At: t0, K: 5, Netns: 4026531840, PID: 13657, Comm: "java", Cgroup: 77,
			Server: netip.MustParseAddrPort("127.0.0.53:53"), Msg: []byte("\x00\x07\x81\x80 a message")},
		{At: t0.Add(time.Second), K: 6, Server: netip.MustParseAddrPort("[2001:db8::53]:53"), TCP: true, Self: true, Msg: []byte{}},
	}
	for i := range want {
		if err := w.DNS(&want[i]); err != nil {
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
		if r.Kind != KindDNS {
			t.Fatalf("record %d: kind %d", i, r.Kind)
		}
		got := r.DNS
		got.At = got.At.In(want[i].At.Location())
		if len(got.Msg) == 0 {
			got.Msg = []byte{}
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}
