package output

import (
	"fmt"
	"strconv"
	"time"

	"github.com/socktrace/socktrace/internal/safetext"
)

// Recording is the recording (-w) pausing on a write error, or resuming.
type Recording struct {
	Time   time.Time
	Paused bool   // true: "paused"; false: "resumed"
	File   string // the file that failed; resumed: the file written from now on
	Err    string // why it paused
	// Resumed: how long it was paused, the transitions not recorded
	// meanwhile.
	PausedFor time.Duration
	Dropped   uint64
	Errors    uint64 // write errors that paused the recording, since start
}

func (r *Recording) status() string {
	if r.Paused {
		return "paused"
	}
	return "resumed"
}

// Recording writes a {"type":"recording",...} record.
func (j *JSON) Recording(r *Recording) error {
	b := append(j.buf[:0], `{"type":"recording","time":"`...)
	b = r.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","status":"`...)
	b = append(b, r.status()...)
	b = append(b, `","file":`...)
	b = AppendString(b, r.File)
	b = append(b, `,"error":`...)
	if r.Paused {
		b = AppendString(b, r.Err)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"paused_ns":`...)
	b = strconv.AppendInt(b, int64(r.PausedFor), 10)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendUint(b, r.Dropped, 10)
	b = append(b, `,"errors_total":`...)
	b = strconv.AppendUint(b, r.Errors, 10)
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// Recording writes nothing to the table: RecordingLine, on stderr, says
// it in every mode.
func (t *Table) Recording(*Recording) error { return nil }

// RecordingLine is the line that tells a user at a terminal the
// recording paused or resumed.
func RecordingLine(r *Recording) string {
	at := r.Time.Local().Format("15:04:05")
	if r.Paused {
		return fmt.Sprintf("socktrace: %s: recording to %s PAUSED: %s; tracing goes on, and the recording resumes once writes succeed again (free some space, or see --rotate-count)",
			at, safetext.Escape(r.File), safetext.Escape(r.Err))
	}
	return fmt.Sprintf("socktrace: %s: recording resumed in %s after %s paused: %d transitions not recorded",
		at, safetext.Escape(r.File), Age(r.PausedFor), r.Dropped)
}

// Flight is a flight recording (--flight-recorder) started by an alert,
// or finished.
type Flight struct {
	Time    time.Time
	Status  string // "flight-started", "flight-written" or "flight-failed"
	File    string
	Alert   string // the alert that started it
	Subject string // what the alert is about: a destination, a listener, a process
	// From: the oldest record it holds; Until: it records until then
	// (started), or did (written).
	From, Until time.Time
	// Written: what it holds.
	Transitions uint64
	Bytes       int64
	Err         string // why it failed
}

// Flight writes a {"type":"recording",...} record for a flight
// recording.
func (j *JSON) Flight(r *Flight) error {
	b := append(j.buf[:0], `{"type":"recording","time":"`...)
	b = r.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","status":`...)
	b = AppendString(b, r.Status)
	b = append(b, `,"file":`...)
	b = AppendString(b, r.File)
	b = append(b, `,"alert":`...)
	b = AppendString(b, r.Alert)
	b = append(b, `,"destination":`...)
	b = AppendString(b, r.Subject)
	b = append(b, `,"from":`...)
	b = appendTimeOrNull(b, r.From)
	b = append(b, `,"until":`...)
	b = appendTimeOrNull(b, r.Until)
	b = append(b, `,"transitions":`...)
	b = strconv.AppendUint(b, r.Transitions, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"error":`...)
	if r.Err != "" {
		b = AppendString(b, r.Err)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

func appendTimeOrNull(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"')
}

// Flight writes nothing to the table: FlightLine, on stderr, says it in
// every mode.
func (t *Table) Flight(*Flight) error { return nil }

// FlightLine is the line that tells a user at a terminal where a flight
// recording went.
func FlightLine(r *Flight) string {
	at := r.Time.Local().Format("15:04:05")
	switch r.Status {
	case "flight-started":
		return fmt.Sprintf("socktrace: %s: %s alert for %s: flight recording to %s (from %s, until %s)",
			at, safetext.Escape(r.Alert), safetext.Escape(r.Subject), safetext.Escape(r.File), r.From.Local().Format("15:04:05"), r.Until.Local().Format("15:04:05"))
	case "flight-written":
		return fmt.Sprintf("socktrace: %s: flight recording %s written: %d transitions, %d bytes; replay it with socktrace read %s",
			at, safetext.Escape(r.File), r.Transitions, r.Bytes, safetext.Escape(r.File))
	}
	return fmt.Sprintf("socktrace: %s: flight recording of the %s alert for %s to %s FAILED: %s",
		at, safetext.Escape(r.Alert), safetext.Escape(r.Subject), safetext.Escape(r.File), safetext.Escape(r.Err))
}
