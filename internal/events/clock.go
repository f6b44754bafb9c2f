package events

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's CLOCK_MONOTONIC timestamps to wall-clock time.
type Clock struct {
	offset int64 // realtime - monotonic, in nanoseconds
}

// NewClock measures the offset between the two clocks now.
func NewClock() *Clock {
	c := &Clock{}
	c.Sync()
	return c
}

// Sync measures the offset again (the wall clock may have been stepped).
// It keeps the reading taken in the shortest window of three.
func (c *Clock) Sync() {
	best := int64(-1)
	for i := 0; i < 3; i++ {
		var m1, r, m2 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		window := m2.Nano() - m1.Nano()
		if best < 0 || window < best {
			best = window
			c.offset = r.Nano() - (m1.Nano()+m2.Nano())/2
		}
	}
}

// Wall returns the wall-clock time of a CLOCK_MONOTONIC timestamp.
func (c *Clock) Wall(ktimeNs uint64) time.Time {
	return time.Unix(0, int64(ktimeNs)+c.offset)
}

// Monotonic returns CLOCK_MONOTONIC now, in nanoseconds.
func Monotonic() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
