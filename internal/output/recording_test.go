package output

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/analysis"
)

// TestJSONRecording: the recording's pause and resumption, as records
// with every field, whatever the error's text.
func TestJSONRecording(t *testing.T) {
	tests := []struct {
		name string
		r    Recording
		want string
	}{
		{"paused", Recording{Time: otTime, Paused: true, File: "/var/tmp/tcp.st", Err: "write capture file /var/tmp/tcp.st: no space left on device", Errors: 1},
			`{"type":"recording","time":"` + otTimeJSON + `","status":"paused","file":"/var/tmp/tcp.st","error":"write capture file /var/tmp/tcp.st: no space left on device","paused_ns":0,"dropped":0,"errors_total":1}` + "\n"},
		{"resumed", Recording{Time: otTime, File: "/var/tmp/tcp.st.1", PausedFor: 12 * time.Second, Dropped: 345, Errors: 2},
			`{"type":"recording","time":"` + otTimeJSON + `","status":"resumed","file":"/var/tmp/tcp.st.1","error":null,"paused_ns":12000000000,"dropped":345,"errors_total":2}` + "\n"},
		{"names escaped", Recording{Time: otTime, Paused: true, File: "/tmp/\"q\"\n.st", Err: "bad \xff\x1b", Errors: 3},
			`{"type":"recording","time":"` + otTimeJSON + `","status":"paused","file":"/tmp/\"q\"\n.st","error":"bad \ufffd\u001b","paused_ns":0,"dropped":0,"errors_total":3}` + "\n"},
	}
	for _, tt := range tests {
		var buf otBuffer
		if err := NewJSON(&buf).Recording(&tt.r); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != tt.want {
			t.Errorf("%s: wrote %q, want %q", tt.name, got, tt.want)
		}
		otRecord(t, buf.Bytes())
	}
}

// TestRecordingLine: the stderr line names the file and the cause, or
// how long it was paused and what was not recorded; names escaped.
func TestRecordingLine(t *testing.T) {
	p := RecordingLine(&Recording{Time: otTime, Paused: true, File: "/x/\x1b[2J.st", Err: "write capture file: no space left on device"})
	for _, w := range []string{"PAUSED", `/x/\x1b[2J.st`, "no space left on device", "tracing goes on"} {
		if !strings.Contains(p, w) {
			t.Errorf("pause line %q lacks %q", p, w)
		}
	}
	r := RecordingLine(&Recording{Time: otTime, File: "/x/t.st.1", PausedFor: 1500 * time.Millisecond, Dropped: 7})
	for _, w := range []string{"resumed in /x/t.st.1", "1.5s", "7 transitions not recorded"} {
		if !strings.Contains(r, w) {
			t.Errorf("resume line %q lacks %q", r, w)
		}
	}
	if strings.Contains(p+r, "\n") {
		t.Errorf("a line break in %q or %q", p, r)
	}
}

// TestSummaryRecording: the summary's recording figures, in JSON (null
// without a recording) and in the table, a pause said.
func TestSummaryRecording(t *testing.T) {
	since := otTime.Add(-12 * time.Second)
	rec := &analysis.RecordingSummary{File: "/var/tmp/tcp.st", Paused: true, Since: since, Err: "write capture file /var/tmp/tcp.st: no space left on device",
		Transitions: 1234, Bytes: 103656, Files: 1, Errors: 2, Dropped: 56}
	for _, r := range []*analysis.RecordingSummary{nil, rec} {
		var buf otBuffer
		if err := NewJSON(&buf).Summary(&analysis.Summary{Time: otTime, Since: otTime, Recording: r}); err != nil {
			t.Fatal(err)
		}
		got := otRecord(t, buf.Bytes())["recording"]
		if r == nil {
			if got != nil {
				t.Errorf("recording %v without one, want null", got)
			}
			continue
		}
		otCheck(t, got.(map[string]any), map[string]any{
			"file": "/var/tmp/tcp.st", "status": "paused", "paused_since": "2024-03-01T11:34:44.000000789Z",
			"error":       "write capture file /var/tmp/tcp.st: no space left on device",
			"transitions": num("1234"), "bytes": num("103656"), "files": num("1"), "errors": num("2"), "dropped": num("56"),
		})
	}
	var errw bytes.Buffer
	tb, buf := otTable(&errw)
	if err := tb.Summary(&analysis.Summary{Time: otTime, Since: otTime, Recording: rec}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"recording: 1234 transitions to /var/tmp/tcp.st (101.2 KiB in 1 file(s))", "PAUSED 2 time(s) by write errors: 56 transitions NOT RECORDED",
		"paused since", "(12s): write capture file /var/tmp/tcp.st: no space left on device"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("table summary lacks %q:\n%s", w, buf.String())
		}
	}
}
