package capture

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/record"
)

// TestAlertRoundTrip: alerts (record type 14) read back as written,
// the trigger told apart; one whose JSON is too big keeps its kind and
// subject.
func TestAlertRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap")
	w, err := Create(path, header(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, maxAlertJSON+1)
	want := []Alert{
		{At: t0, Kind: "recovered", Subject: "10.0.0.1:443", JSON: []byte(`{"type":"alert","alert":"recovered"}`)},
		{At: t0.Add(time.Second), Kind: "failing", Subject: "[::1]:9092", JSON: []byte(`{"type":"alert","alert":"failing"}`), Trigger: true},
		{At: t0.Add(2 * time.Second), Kind: "close-wait", Subject: "python3-123", JSON: big},
	}
	for i := range want {
		if err := w.Alert(&want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want[2].JSON = nil
	recs, warns := readAll(t, []string{path})
	if len(warns) != 0 || len(recs) != len(want) {
		t.Fatalf("%d records, warnings %v", len(recs), warns)
	}
	for i, r := range recs {
		if r.Kind != KindAlert {
			t.Fatalf("record %d: kind %d", i, r.Kind)
		}
		got := r.Alert
		got.At = got.At.In(want[i].At.Location())
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

// TestAppendTransition: a transition's self-contained body (package
// flight's ring) decodes back to it, its identity apart.
func TestAppendTransition(t *testing.T) {
	d := NewDecoder()
	for i, tr := range sample(200) {
		body := AppendTransition(nil, &tr)
		var got record.Transition
		if err := d.Transition(body, &got); err != nil {
			t.Fatalf("transition %d: %v", i, err)
		}
		want := tr
		want.OwnerID = nil
		if !sameTransition(&got, &want) {
			t.Fatalf("transition %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if err := d.Transition([]byte{recDNS}, &record.Transition{}); err == nil {
		t.Errorf("a DNS record decoded as a transition")
	}
}
