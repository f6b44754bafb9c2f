// Package gcroom gives the Go garbage collector a minimum of room to
// allocate between collections. A tracer at full churn allocates a row a
// socket (megabytes a second) into a live heap of a few MiB: at the
// default GOGC of 100 the collector then runs every few MiB allocated,
// a large share of the tracer's CPU. With Keep(room), the collector's
// percentage is raised so that each cycle allows at least room bytes of
// allocation (never below the default): a small heap gets that room, a
// large one (an agent with many sockets) the default's proportional
// room. What it costs in memory is at most room.
package gcroom

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Every is how often the live heap is looked at.
const Every = time.Second

// Percent is the GOGC that gives a live heap of live bytes at least room
// bytes of room: 100 × room / live, at least 100, at most 100 × 64.
func Percent(live, room uint64) int {
	if live == 0 {
		return 100 * 64
	}
	return int(max(100, min(100*room/live, 100*64)))
}

// Keep keeps at least room bytes of room until stop is called; it does
// nothing when the user set GOGC (theirs wins).
func Keep(room uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			debug.SetGCPercent(Percent(sample[0].Value.Uint64(), room))
		}
	}
	set()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(Every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				set()
			}
		}
	}()
	return func() { close(done); debug.SetGCPercent(100) }
}
