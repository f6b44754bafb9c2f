package pipeline

import "sync/atomic"

// The wake protocol. Only the reading goroutine touches the pipeline, so
// the timers and signals of a live run do not act themselves: each says
// why it wants the loop (a wake reason) and wakes the tracer, whose Read
// then returns a WakeRecord; the loop takes the reasons it finds and
// acts on them (liveSource.woken). A wake with no reason (nudge) still
// has the loop drain DNS, tick the recording and poll reconciliation.

// wakeReason is why the loop was woken.
type wakeReason int

const (
	wakeSummary      wakeReason = iota // SIGUSR1 or --interval: write a summary
	wakeReconcile                      // --reconcile-every came round
	wakeHousekeeping                   // once a second: namespaces gone away
	numWakeReasons
)

// wakeups carries wake reasons from other goroutines to the loop.
type wakeups struct {
	wanted [numWakeReasons]atomic.Bool
	wake   func() // makes the tracer's Read return a WakeRecord
}

// ask wakes the loop for reason r; any goroutine may call it.
func (w *wakeups) ask(r wakeReason) {
	w.want(r)
	w.wake()
}

// want notes reason r for the next wake-up, without waking the loop.
func (w *wakeups) want(r wakeReason) { w.wanted[r].Store(true) }

// nudge wakes the loop for no reason of its own (the reconciler's dump
// is done); any goroutine may call it.
func (w *wakeups) nudge() { w.wake() }

// take says whether r was asked for since the last take, and forgets it.
func (w *wakeups) take(r wakeReason) bool { return w.wanted[r].Swap(false) }
