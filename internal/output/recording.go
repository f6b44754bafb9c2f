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
