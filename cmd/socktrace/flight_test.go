package main

// The flight recorder (--flight-recorder), with the story of a failing
// destination: a recording per alert, holding what led to it and what
// followed, replayed to the same alert; its bounds driven past their
// caps and counted.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/capture"
	"github.com/socktrace/socktrace/internal/flight"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// flightRecords are the recording records of flight recordings with
// status st.
func flightRecords(recs []record, st string) []record {
	var out []record
	for _, r := range recs {
		if r.str("type") == "recording" && r.str("status") == st {
			out = append(out, r)
		}
	}
	return out
}

// flightWritten: n flight recordings were written.
func flightWritten(n int) func([]string) bool {
	return func(lines []string) bool {
		return linesWith(lines, `"type":"recording"`, `"status":"flight-written"`) >= n
	}
}

// flightFile reads a flight recording back with package capture: its
// triggering alert, and the transitions before and after it.
type flightFile struct {
	trigger       capture.Alert
	triggers      int
	before, after int
}

func readFlightFile(t *testing.T, path string) flightFile {
	t.Helper()
	r, err := capture.Open([]string{path}, capture.ReadOptions{Warn: func(m string) { t.Errorf("%s: %s", path, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var f flightFile
	var rec capture.Record
	var times []time.Time
	for {
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch rec.Kind {
		case capture.KindAlert:
			if rec.Alert.Trigger {
				f.triggers++
				f.trigger = rec.Alert
				f.trigger.JSON = append([]byte(nil), rec.Alert.JSON...)
			}
		case capture.KindTransition:
			times = append(times, rec.Transition.Time)
		}
	}
	for _, at := range times {
		if at.After(f.trigger.At) {
			f.after++
		} else {
			f.before++
		}
	}
	return f
}

// TestFlightRecorder: the client retries two broken destinations; each
// turns failing once, and each alert makes one recording, named by
// time, alert and destination, holding the transitions before the alert
// and --flight-after after, and the alert; socktrace read replays it to
// the same alert.
func TestFlightRecorder(t *testing.T) {
	s := newStory(t)
	dir := t.TempDir()
	p := start(t, "-o", "json", "--netns", s.ns.Path(), "--no-snapshot", "--summary",
		"--flight-recorder", "10m", "--flight-dir", dir, "--flight-after", "2s")
	startClient(t, s.ns, s.dropped, s.good, s.shut)
	p.waitForIn(t, 30*time.Second, "two flight recordings written", flightWritten(2))
	recs := parseJSON(t, p.stop(t))
	live := map[int]record{}
	for _, r := range recs {
		if r.str("type") == "alert" && r.str("alert") == "failing" {
			live[int(r.num("dport"))] = r
		}
	}
	started, written := flightRecords(recs, "flight-started"), flightRecords(recs, "flight-written")
	if len(started) != 2 || len(written) != 2 {
		t.Fatalf("flight recordings started %v, written %v: want one per failing destination", started, written)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("files in --flight-dir: %v, want 2", files)
	}
	for _, port := range []int{9092, s.closed} {
		dest := fmt.Sprintf("127.0.0.1:%d", port)
		var rec record
		for _, r := range started {
			if r.str("destination") == dest {
				rec = r
			}
		}
		if rec == nil || rec.str("alert") != "failing" {
			t.Errorf("no flight-started record for %s: %v", dest, started)
			continue
		}
		file := rec.str("file")
		base := filepath.Base(file)
		if !strings.HasPrefix(base, flight.Prefix) || !strings.HasSuffix(base, flight.Suffix) ||
			!strings.Contains(base, fmt.Sprintf("-failing-127.0.0.1_%d", port)) || filepath.Dir(file) != dir {
			t.Errorf("recording %s: want it in %s, named by time, alert and destination", file, dir)
		}
		f := readFlightFile(t, file)
		if f.triggers != 1 || f.trigger.Kind != "failing" || f.trigger.Subject != dest ||
			!strings.Contains(string(f.trigger.JSON), fmt.Sprintf(`"dport":%d,`, port)) {
			t.Errorf("%s: %d triggering alerts, the last %+v: want the failing alert for %s, once", file, f.triggers, f.trigger, dest)
		}
		// Failures take ~3 s each (TCP_SYNCNT 1) and the client retries
		// every 150ms: many transitions before the alert, and the 2 s
		// after hold more.
		if f.before < 6 || f.after < 2 {
			t.Errorf("%s: %d transitions before the alert, %d after: want the ones that led to it and those of --flight-after", file, f.before, f.after)
		}
		// socktrace read replays it to the same alert.
		out, _ := readCapture(t, "-o", "json", file)
		var replayed record
		for _, r := range parseJSON(t, strings.Split(strings.TrimSpace(out), "\n")) {
			if r.str("type") == "alert" && r.str("alert") == "failing" && int(r.num("dport")) == port {
				replayed = r
			}
		}
		want := live[port]
		if replayed == nil || want == nil || replayed.str("time") != want.str("time") || replayed.num("pid") != want.num("pid") {
			t.Errorf("%s replays to the alert %v, want the live one %v", file, replayed, want)
		}
	}
	fr, _ := lastSummary(t, recs)["flight_recorder"].(map[string]any)
	byAlert, _ := fr["recordings"].(map[string]any)
	if fr == nil || byAlert["failing"] != float64(2) || fr["bytes"].(float64) <= 0 || fr["size_bytes"] != float64(64<<20) || fr["dropped"] != float64(0) || fr["files_removed"] != float64(0) {
		t.Errorf("summary flight_recorder %v: want 2 failing recordings, its memory, nothing dropped or removed", fr)
	}
}

// TestFlightRecorderBounds: a 4K flight recorder drops its oldest
// records, and --flight-max-files 1 removes the first recording when
// the second comes: both counted, in the summary and the metrics.
func TestFlightRecorderBounds(t *testing.T) {
	s := newStory(t)
	dir := t.TempDir()
	// A recording of another run is there already: the oldest, it goes first.
	old := filepath.Join(dir, flight.Prefix+"20000101T000000.000Z-failing-127.0.0.1_1"+flight.Suffix)
	if err := os.WriteFile(old, []byte(capture.Magic), 0o600); err != nil {
		t.Fatal(err)
	}
	p, addr := startAgent(t, "--netns", s.ns.Path(),
		"--flight-recorder", "10m", "--flight-recorder-size", "4K", "--flight-dir", dir, "--flight-after", "1s", "--flight-max-files", "1")
	startClient(t, s.ns, s.dropped, s.good, s.shut)
	p.waitForIn(t, 30*time.Second, "two flight recordings written", flightWritten(2))
	m := scrape(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/metrics")
	if m[`socktrace_flight_recordings_total{alert="failing"}`] != 2 || m["socktrace_flight_files_removed_total"] != 2 ||
		m["socktrace_flight_recorder_dropped_total"] <= 0 || m["socktrace_flight_recorder_bytes"] > 4096 ||
		m["socktrace_flight_recorder_bytes"] <= 0 || m["socktrace_flight_recorder_size_bytes"] != 4096 {
		t.Errorf("flight metrics: %v", pick(m, "socktrace_flight_"))
	}
	p.stop(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || files[0] == old {
		t.Fatalf("files in --flight-dir: %v, want only the newest recording", files)
	}
	f := readFlightFile(t, files[0])
	if f.triggers != 1 || f.trigger.Kind != "failing" {
		t.Errorf("%s: %+v, want its failing alert", files[0], f.trigger)
	}
	// 4K holds a few dozen transitions (each costs more than 64 bytes):
	// fewer than the story made.
	if f.before == 0 || f.before > 4096/64 {
		t.Errorf("%s: %d transitions before the alert, want some, and no more than 4K holds", files[0], f.before)
	}
}

// pick is the samples of m whose name starts with prefix.
func pick(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// TestFlightRecorderCloseWait: a process's sockets staying in
// CLOSE-WAIT past --close-wait-after, seen at a reconciliation, make one
// close-wait recording, however long the leak lasts.
func TestFlightRecorderCloseWait(t *testing.T) {
	ns := testnet.New(t)
	dir := t.TempDir()
	p := start(t, "-o", "json", "--netns", ns.Path(), "--close-wait-after", "300ms", "--reconcile-every", "1s",
		"--flight-recorder", "1m", "--flight-dir", dir, "--flight-after", "500ms")
	neverCloses(t, ns, 3)
	p.waitForIn(t, 15*time.Second, "a close-wait recording written", flightWritten(1))
	time.Sleep(2500 * time.Millisecond) // two more reconciliations: the leak goes on
	recs := parseJSON(t, p.stop(t))
	started := flightRecords(recs, "flight-started")
	subj := fmt.Sprintf("%s-%d", selfComm(), os.Getpid())
	if len(started) != 1 || started[0].str("alert") != "close-wait" || started[0].str("destination") != subj {
		t.Fatalf("flight recordings started: %v, want one close-wait recording for %s", started, subj)
	}
	f := readFlightFile(t, started[0].str("file"))
	if f.triggers != 1 || f.trigger.Kind != "close-wait" || !strings.Contains(string(f.trigger.JSON), `"sockets":3,`) || f.before < 6 {
		t.Errorf("%s: %+v (%s), %d transitions before: want the close-wait alert of 3 sockets after their transitions",
			started[0].str("file"), f.trigger, f.trigger.JSON, f.before)
	}
}

// alertKinds are the kinds of the alerts a flight recording holds, in
// order, and which one started it.
func alertKinds(t *testing.T, path string) (kinds []string, trigger string) {
	t.Helper()
	r, err := capture.Open([]string{path}, capture.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rec capture.Record
	for r.Next(&rec) == nil {
		if rec.Kind == capture.KindAlert {
			kinds = append(kinds, rec.Alert.Kind)
			if rec.Alert.Trigger {
				trigger = rec.Alert.Kind
			}
		}
	}
	return kinds, trigger
}

// replayedAlerts are the alert records socktrace read gives for file.
func replayedAlerts(t *testing.T, file string) []record {
	t.Helper()
	out, _ := readCapture(t, "-o", "json", file)
	return alertsOf(parseJSON(t, strings.Split(strings.TrimSpace(out), "\n")))
}

// TestFlightRecorderStaleDNS: a client keeps connecting to the address
// its name no longer resolves to: the stale-dns alert starts a
// recording, with the DNS answers before it; the failing alert for the
// same destination goes into that recording, not a second one; the
// recording replays to both.
func TestFlightRecorderStaleDNS(t *testing.T) {
	s := newDNSScene(t)
	dir := t.TempDir()
	p := start(t, "-o", "json", "--dport", "9092", "--no-snapshot",
		"--flight-recorder", "10m", "--flight-dir", dir, "--flight-after", "1m")
	_, addr, goOn := s.startDNSClient(t, "once:kafka.example.com:9092")
	if addr != "10.4.1.80" {
		t.Fatalf("client resolved %s", addr)
	}
	s.setHosts(t, "10.4.1.81")
	goOn()
	p.waitForIn(t, 20*time.Second, "a failing alert", alertFor("failing", 9092))
	recs := parseJSON(t, p.stop(t)) // the recording ends with the run
	alerts := alertsOf(recs)
	started, written := flightRecords(recs, "flight-started"), flightRecords(recs, "flight-written")
	if len(started) != 1 || started[0].str("alert") != "stale-dns" || started[0].str("destination") != "10.4.1.80:9092" ||
		len(written) != 1 || written[0].str("file") != started[0].str("file") {
		t.Fatalf("flight recordings started %v, written %v: want one, by stale-dns, for 10.4.1.80:9092", started, written)
	}
	file := started[0].str("file")
	if kinds, trigger := alertKinds(t, file); trigger != "stale-dns" || !slices.Contains(kinds, "failing") {
		t.Errorf("%s holds alerts %v, started by %q: want stale-dns's, and the failing one", file, kinds, trigger)
	}
	replayed := replayedAlerts(t, file)
	if len(replayed) < 2 || len(alerts) < 2 {
		t.Fatalf("replay: alerts %v, live %v", replayed, alerts)
	}
	for i := 0; i < 2; i++ {
		if fmt.Sprint(replayed[i]) != fmt.Sprint(alerts[i]) {
			t.Errorf("replayed alert %d:\n%v\nlive:\n%v", i, replayed[i], alerts[i])
		}
	}
}

// TestFlightRecorderListenOverflow: clients overflow a listener's
// accept queue: one recording for the listener, holding its
// listen-overflow alert; it replays to it.
func TestFlightRecorderListenOverflow(t *testing.T) {
	ns := testnet.New(t)
	s := newOverflowScene(t, ns)
	dir := t.TempDir()
	p := start(t, "-o", "json", "--netns", ns.Path(), "--flight-recorder", "10m", "--flight-dir", dir, "--flight-after", "1m")
	s.startClients(t)
	p.waitForIn(t, 15*time.Second, "listen-overflow", func(lines []string) bool {
		return linesWith(lines, `"alert":"listen-overflow"`) > 0
	})
	s.stopClients()
	recs := parseJSON(t, p.stop(t))
	var started []record
	for _, r := range flightRecords(recs, "flight-started") {
		if r.str("destination") == s.target {
			started = append(started, r)
		}
	}
	if len(started) != 1 {
		t.Fatalf("flight recordings started for %s: %v, want one", s.target, started)
	}
	file := started[0].str("file")
	if kinds, trigger := alertKinds(t, file); !slices.Contains(kinds, "listen-overflow") || trigger != started[0].str("alert") {
		t.Errorf("%s holds alerts %v, started by %q: want the listen-overflow alert, the trigger %s", file, kinds, trigger, started[0].str("alert"))
	}
	live := listenAlerts(recs)
	replayed := listenAlerts(replayedAlerts(t, file))
	if len(live) == 0 || len(replayed) == 0 || fmt.Sprint(replayed[0]) != fmt.Sprint(live[0]) {
		t.Errorf("replayed listener alerts %v, live %v: want the same first", replayed, live)
	}
}
