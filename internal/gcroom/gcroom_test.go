package gcroom

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		live, base, room uint64
		want             int
	}{
		{4 * mib, 8 * mib, 16 * mib, 200},       // a tracer: 16 MiB of room over its base (heap, stacks, globals)
		{16 * mib, 20 * mib, 16 * mib, 100},     // the default gives as much
		{500 * mib, 510 * mib, 16 * mib, 100},   // an agent with many sockets: never below the default
		{100 * 1024, 200 * 1024, 16 * mib, 402}, // a tiny heap: the runtime's 4 MiB × GOGC/100 minimum decides
		{0, 0, 16 * mib, 400},
		{3 * mib, 4 * mib, 8 * mib, 200},
		{1 * mib, 3 * mib, 8 * mib, 225}, // an idle agent: minimum heap 9 MiB = live + room
	}
	for _, tc := range tests {
		if got := Percent(tc.live, tc.base, tc.room); got != tc.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", tc.live, tc.base, tc.room, got, tc.want)
		}
	}
}

// TestKeep: Keep raises the collector's percentage for this (small) test
// heap, stop puts the default back; a GOGC the user set is left alone.
func TestKeep(t *testing.T) {
	stop := Keep(1 << 30)
	if got := debug.SetGCPercent(100); got <= 100 {
		t.Errorf("with 1 GiB of room asked for, GOGC %d, want more than 100", got)
	}
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after stop, GOGC %d, want 100", got)
	}
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	Keep(1 << 30)()
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("with GOGC=50 set, GOGC %d after Keep, want 50", got)
	}
}

// TestKeepRoom: the room Keep gives is what it was asked for, not
// several times that: the collector's next goal is at most room above
// the live heap (and the stacks and globals it scans). Computing the
// percentage from the live heap alone gave an agent 40 MiB of room for
// 8 asked for.
func TestKeepRoom(t *testing.T) {
	const room = 8 << 20
	runtime.GC()
	stop := Keep(room)
	defer stop()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	goal, live := s[0].Value.Uint64(), s[1].Value.Uint64()
	// A tenth more for the percentage's rounding and what the runtime
	// allocated since the last collection.
	if goal-live > room+room/10 {
		t.Errorf("heap goal %d with %d live: %d bytes of room, want at most %d", goal, live, goal-live, room+room/10)
	}
	if goal-live < room/2 {
		t.Errorf("heap goal %d with %d live: %d bytes of room, want about %d", goal, live, goal-live, room)
	}
}

// TestTight: Tight sets the percentage and restore puts the one before
// back; a GOGC the user set is left alone.
func TestTight(t *testing.T) {
	debug.SetGCPercent(100)
	restore := Tight(50)
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("under Tight(50), GOGC %d", got)
	}
	restore()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after restore, GOGC %d, want 100", got)
	}
	t.Setenv("GOGC", "300")
	debug.SetGCPercent(300)
	Tight(50)()
	if got := debug.SetGCPercent(100); got != 300 {
		t.Errorf("with GOGC=300 set, GOGC %d after Tight, want 300", got)
	}
}

var sink [][]byte

// TestRelease: after 64 MiB were allocated and dropped, Release gives
// the free heap back (what stays resident of it is under the threshold),
// and a second call has nothing to do.
func TestRelease(t *testing.T) {
	const threshold = 16 << 20
	for i := 0; i < 64; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = 1 // touched: resident
		}
		sink = append(sink, b)
	}
	sink = nil
	runtime.GC()
	if !Release(threshold) {
		t.Fatal("64 MiB dropped: Release did nothing")
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if free := s[0].Value.Uint64(); free > threshold {
		t.Errorf("after Release, %d bytes of free heap still resident", free)
	}
	if Release(threshold) {
		t.Error("a second Release found more than the threshold free")
	}
}
