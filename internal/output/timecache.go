package output

import (
	"time"
)

// timeCache formats times as TimeLayout does, in UTC, redoing the date
// and the clock only when the second changes: records come in time
// order, many a second, and the date was most of what formatting one
// cost. lead and after, if set, are text that always comes before and
// after the time in the records it formats: the cache holds lead with
// the date, one copy, not two.
type timeCache struct {
	lead, after string
	sec         int64  // Unix second of prefix; prefix empty: none yet
	prefix      []byte // lead + "2006-01-02T15:04:05."
}

// append appends lead, t as TimeLayout formats it in UTC, and after.
func (c *timeCache) append(b []byte, t time.Time) []byte {
	sec, ns := t.Unix(), t.Nanosecond()
	if len(c.prefix) == 0 || sec != c.sec {
		u := t.UTC()
		if y := u.Year(); y < 0 || y > 9999 {
			b = append(b, c.lead...)
			b = u.AppendFormat(b, TimeLayout) // as the layout would
			return append(b, c.after...)
		}
		c.prefix = append(c.prefix[:0], c.lead...)
		c.prefix = u.AppendFormat(c.prefix, "2006-01-02T15:04:05.")
		c.sec = sec
	}
	b = append(b, c.prefix...)
	// Nine digits, two at a time from the right, and the zone.
	var d [10]byte
	n := uint(ns)
	for i := 7; i > 0; i -= 2 {
		q := n / 100
		r := (n - q*100) * 2
		d[i], d[i+1] = digitPairs[r], digitPairs[r+1]
		n = q
	}
	d[0] = byte('0' + n)
	d[9] = 'Z'
	b = append(b, d[:]...)
	return append(b, c.after...)
}
