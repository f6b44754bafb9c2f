package flight

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

var t0 = time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)

// clock is a recorder's time, moved by the test.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newRecorder(t *testing.T, o Options) (*Recorder, *clock) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	r := New(o, capture.Header{Socktrace: "test", Host: "h", Started: t0})
	r.nowFn = c.Now
	return r, c
}

// transition is a connect attempt's transition at at.
func transition(at time.Time, cookie uint64) *record.Transition {
	return &record.Transition{Transition: events.Transition{Time: at, Cookie: cookie, Old: tcpstate.Close, New: tcpstate.SynSent, TaskComm: "curl"}}
}

// transitionsIn reads a recording back: its transitions' cookies and
// its triggering alerts.
func transitionsIn(t *testing.T, path string) (cookies []uint64, triggers []string) {
	t.Helper()
	rd, err := capture.Open([]string{path}, capture.ReadOptions{Warn: func(m string) { t.Error(m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var rec capture.Record
	for {
		if err := rd.Next(&rec); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
		switch rec.Kind {
		case capture.KindTransition:
			cookies = append(cookies, rec.Transition.Cookie)
		case capture.KindAlert:
			if rec.Alert.Trigger {
				triggers = append(triggers, rec.Alert.Kind+" "+rec.Alert.Subject)
			}
		}
	}
}

// TestWindowAndAfter: a recording holds the window before the alert
// (older records are gone) and what comes until --flight-after, then
// closes; a second alert for the subject meanwhile makes no file.
func TestWindowAndAfter(t *testing.T) {
	r, c := newRecorder(t, Options{Window: 10 * time.Second, After: 5 * time.Second})
	for i := uint64(1); i <= 20; i++ {
		c.now = t0.Add(time.Duration(i) * time.Second)
		r.Transition(transition(c.now, i))
	}
	// t0+20s: the window holds cookies 10..20.
	r.Alert(&Alert{At: c.now, Kind: "failing", Subject: "10.0.0.1:443", JSON: []byte(`{}`), Trigger: true})
	r.Alert(&Alert{At: c.now, Kind: "failing", Subject: "10.0.0.1:443", JSON: []byte(`{}`), Trigger: true})
	news := r.News()
	if len(news) != 1 || !news[0].Open || !strings.Contains(filepath.Base(news[0].File), "20261207T220020.000Z-failing-10.0.0.1_443") {
		t.Fatalf("news %+v: want one recording opened, named by time, alert and destination", news)
	}
	for i := uint64(21); i <= 30; i++ {
		c.now = t0.Add(time.Duration(i) * time.Second)
		r.Transition(transition(c.now, i))
		r.Tick(c.now)
	}
	news = r.News()
	if len(news) != 1 || news[0].Open || news[0].Transitions != 16 {
		t.Fatalf("news %+v: want the recording closed with 11 transitions before and 5 after", news)
	}
	cookies, triggers := transitionsIn(t, news[0].File)
	if len(cookies) != 16 || cookies[0] != 10 || cookies[15] != 25 || len(triggers) != 1 || triggers[0] != "failing 10.0.0.1:443" {
		t.Errorf("recording holds %v, triggers %v: want cookies 10 to 25 and the alert", cookies, triggers)
	}
	if st := r.Stats(); st.Recordings["failing"] != 1 || st.Dropped != 0 || st.Files != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestBounds: the memory bound drops the oldest records, counted; the
// files bound removes the oldest recordings, counted, those of other
// runs included.
func TestBounds(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, Prefix+"20000101T000000.000Z-failing-x"+Suffix)
	other := filepath.Join(dir, "not-ours.sktr")
	for _, f := range []string{old, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, c := newRecorder(t, Options{Window: time.Hour, Size: 8192, Dir: dir, After: time.Second, MaxFiles: 2})
	for i := uint64(1); i <= 1000; i++ {
		r.Transition(transition(c.now, i))
	}
	st := r.Stats()
	if st.Bytes > 8192 || st.Bytes < 4096 || st.Dropped == 0 || st.Dropped+uint64(st.Records) != 1000 {
		t.Errorf("stats %+v: want at most 8192 bytes, the rest dropped and counted", st)
	}
	for i, subj := range []string{"a:1", "b:2", "c:3"} {
		c.now = t0.Add(time.Duration(i) * time.Minute)
		r.Alert(&Alert{At: c.now, Kind: "stale-dns", Subject: subj, Trigger: true})
	}
	r.Close()
	st = r.Stats()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if st.Removed != 2 || st.Files != 2 || len(files) != 3 || st.Recordings["stale-dns"] != 3 {
		t.Errorf("stats %+v, files %v: want 2 recordings and the file not ours, 2 removed", st, files)
	}
	for _, f := range files {
		if f == old || strings.Contains(f, "a_1") {
			t.Errorf("%s is still there: want the oldest removed", f)
		}
	}
}

// TestCheck: each bad flag is named.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Window: -1}, "--flight-recorder"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 1}, "--flight-dir DIR"},
		{Options{Window: time.Minute, Size: 100, MaxFiles: 1, Dir: dir}, "--flight-recorder-size"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 0, Dir: dir}, "--flight-max-files"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 1, Dir: dir, After: -1}, "--flight-after"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 1, Dir: filepath.Join(dir, "none")}, "create the directory"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 1, Dir: file}, "not a directory"},
		{Options{Window: time.Minute, Size: 1 << 20, MaxFiles: 1, Dir: dir}, ""},
	} {
		err := c.o.Check()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%+v) = %v, want %q", c.o, err, c.want)
		}
	}
}
