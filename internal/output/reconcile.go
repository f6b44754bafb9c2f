package output

import (
	"fmt"
	"strconv"
	"time"
)

// Reconciliation is what one check of the live table against the kernel
// changed.
type Reconciliation struct {
	Time    time.Time
	Trigger string // "lost", "skipped", "interval", "netns-gone"
	Closed  int    // live sockets the kernel no longer had: their close was not seen
	Added   int    // sockets the kernel had that the table lacked: their birth was not seen
	Changed int    // sockets whose state had moved unseen
	Live    int    // live sockets remembered after it
	// Totals since start.
	ClosedTotal, AddedTotal, ChangedTotal uint64
	Duration                              time.Duration // the dump's
}

// Reconciled writes a {"type":"reconciled",...} record.
func (j *JSON) Reconciled(r *Reconciliation) error {
	b := j.buf[:0]
	b = append(b, `{"type":"reconciled","time":"`...)
	b = r.Time.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","trigger":`...)
	b = AppendString(b, r.Trigger)
	for _, f := range []struct {
		name string
		v    uint64
	}{{"closed", uint64(r.Closed)}, {"added", uint64(r.Added)}, {"changed", uint64(r.Changed)},
		{"live", uint64(r.Live)}, {"closed_total", r.ClosedTotal}, {"added_total", r.AddedTotal},
		{"changed_total", r.ChangedTotal}, {"dump_ns", uint64(r.Duration)}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, f.v, 10)
	}
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// Reconciled tells the user on errw, as for losses, when the check
// followed a loss the user was told of; the periodic checks correct what
// filters in the kernel keep from user space (an established socket's
// close with --state syn-sent) and are not news at a terminal.
func (t *Table) Reconciled(r *Reconciliation) error {
	if r.Trigger != "lost" && r.Trigger != "skipped" {
		return nil
	}
	_, err := fmt.Fprintf(t.errw, "socktrace: %s: checked against the kernel (after %s): %d sockets closed whose close was not seen, %d added whose birth was not seen, %d changed state unseen; %d live\n",
		r.Time.Local().Format("15:04:05.000000"), r.Trigger, r.Closed, r.Added, r.Changed, r.Live)
	return err
}
