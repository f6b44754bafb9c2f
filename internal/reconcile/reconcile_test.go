package reconcile

import (
	"testing"
	"time"
)

func TestReconcileGap(t *testing.T) {
	for _, tt := range []struct {
		streak int
		want   time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {40, 8 * time.Second}} {
		rc := &Reconciler{lossStreak: tt.streak}
		if got := rc.gap(); got != tt.want {
			t.Errorf("after %d loss-triggered reconciliations: gap %s, want %s", tt.streak, got, tt.want)
		}
	}
	// Losses make a streak; a quiet reconciliation ends it.
	rc := &Reconciler{}
	rc.Request("lost")
	if !rc.lossSince || rc.wanted != "lost" {
		t.Errorf("request(lost): %+v", rc)
	}
	rc.wanted = ""
	rc.Request("interval")
	if rc.wanted != "interval" {
		t.Errorf("request(interval): wanted %q", rc.wanted)
	}
}
