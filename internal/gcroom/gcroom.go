// Package gcroom gives the Go garbage collector a minimum of room to
// allocate between collections. A tracer at full churn allocates a row a
// socket (megabytes a second) into a live heap of a few MiB: at the
// default GOGC of 100 the collector then runs every few MiB allocated,
// a large share of the tracer's CPU. With Keep(room), the collector's
// percentage is raised so that each cycle allows at least room bytes of
// allocation (never below the default): a small heap gets that room, a
// large one (an agent with many sockets) the default's proportional
// room. What it costs in memory is at most room (above the default's).
package gcroom

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Every is how often the live heap is looked at.
const Every = time.Second

// Percent is the GOGC that gives room bytes of room above a live heap of
// live bytes, when the collector's percentage applies to base bytes (the
// live heap, the stacks and the globals): 100 × room / base, at least
// 100, at most 100 × 64. The runtime never sets its goal below a minimum
// heap of 4 MiB × GOGC/100 either, which for a small heap is what
// decides: the percentage is then kept to what puts that minimum at
// live + room.
func Percent(live, base, room uint64) int {
	p := uint64(100 * 64)
	if base > 0 {
		p = min(p, 100*room/base)
	}
	p = min(p, 100*(live+room)/minHeap)
	return int(max(100, p))
}

// minHeap is the Go runtime's minimum heap goal at GOGC=100 (heapMinimum
// in runtime/mgcpacer.go), scaled by GOGC/100.
const minHeap = 4 << 20

// The collector's percentage applies to the live heap plus the
// goroutine stacks and the globals it scans (Go 1.18 and later), not to
// the live heap alone: a binary's globals alone are a few MiB, as much
// as a tracer's live heap.
var baseMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// Keep keeps at least room bytes of room until stop is called; it does
// nothing when the user set GOGC (theirs wins).
func Keep(room uint64) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	sample := make([]metrics.Sample, len(baseMetrics))
	for i, name := range baseMetrics {
		sample[i].Name = name
	}
	set := func() {
		metrics.Read(sample)
		var base uint64
		for _, s := range sample {
			if s.Value.Kind() == metrics.KindUint64 {
				base += s.Value.Uint64()
			}
		}
		debug.SetGCPercent(Percent(sample[0].Value.Uint64(), base, room))
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

// Tight runs the collector at percent (below the default's 100) until
// restore is called: for a phase that makes much short-lived garbage
// (loading BPF programs decodes the kernel's BTF, tens of MiB of it),
// whose peak would otherwise be the process's highest resident memory.
// It does nothing when the user set GOGC.
func Tight(percent int) (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(percent)
	return func() { debug.SetGCPercent(old) }
}

// Release gives the heap's free memory back to the kernel (a collection
// and a scavenge, debug.FreeOSMemory) when more than above bytes of it
// are resident, and says whether it did. The runtime's own scavenger
// returns memory at a pace of minutes: after a burst, what the burst grew
// would stay resident until then.
func Release(above uint64) bool {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[0].Value.Uint64() <= above {
		return false
	}
	debug.FreeOSMemory()
	return true
}
