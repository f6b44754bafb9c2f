package gcroom

import (
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		live, min uint64
		want      int
	}{
		{4 * mib, 16 * mib, 400},   // a tracer: 16 MiB of room
		{16 * mib, 16 * mib, 100},  // the default gives as much
		{500 * mib, 16 * mib, 100}, // an agent with many sockets: never below the default
		{100 * 1024, 16 * mib, 6400},
		{0, 16 * mib, 6400},
		{3 * mib, 16 * mib, 533},
	}
	for _, tc := range tests {
		if got := Percent(tc.live, tc.min); got != tc.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tc.live, tc.min, got, tc.want)
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
