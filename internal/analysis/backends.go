package analysis

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// MaxBackends bounds the NAT backends a destination keeps counts for;
// attempts that went to others are counted for the destination only.
const MaxBackends = 16

// Backend is what happened to the connect attempts to a destination
// that this host's NAT sent to one backend (kube-proxy's DNAT of a
// Service VIP to a pod, say).
type Backend struct {
	Addr         netip.AddrPort
	Attempts     uint64
	Successes    uint64
	Failures     [nOutcomes]uint64 // by outcome; Failures[Established] is unused
	Streak       uint64            // failed in a row, up to the last that ended
	Failing      bool              // Streak reached the threshold; cleared by a success
	FailingSince time.Time         // when the first attempt of the streak began
	LastOutcome  Outcome
}

// Failed is the number of attempts through the backend that failed.
func (b *Backend) Failed() uint64 {
	var n uint64
	for _, o := range Failures {
		n += b.Failures[o]
	}
	return n
}

// backend is d's entry for addr, made if there is room; nil if not.
func (d *Dest) backend(addr netip.AddrPort) *Backend {
	for i := range d.Backends {
		if d.Backends[i].Addr == addr {
			return &d.Backends[i]
		}
	}
	if len(d.Backends) >= MaxBackends {
		return nil
	}
	d.Backends = append(d.Backends, Backend{Addr: addr})
	return &d.Backends[len(d.Backends)-1]
}

// backendFailing is the failing backend whose streak began first, nil
// if none is failing.
func (d *Dest) backendFailing() *Backend {
	var first *Backend
	for i := range d.Backends {
		b := &d.Backends[i]
		if b.Failing && (first == nil || b.FailingSince.Before(first.FailingSince)) {
			first = b
		}
	}
	return first
}

// clone is a copy of d that shares nothing with it.
func (d *Dest) clone() Dest {
	c := *d
	if d.Backends != nil {
		c.Backends = append([]Backend(nil), d.Backends...)
	}
	return c
}

// ended counts an attempt through backend b that ended with o, which
// began at began; it reports whether b turned failing.
func (b *Backend) ended(o Outcome, began time.Time, failAfter int) bool {
	b.Attempts++
	b.LastOutcome = o
	if o == Established {
		b.Successes++
		b.Streak, b.Failing, b.FailingSince = 0, false, time.Time{}
		return false
	}
	b.Failures[o]++
	if b.Streak == 0 {
		b.FailingSince = began
	}
	b.Streak++
	if !b.Failing && b.Streak >= uint64(failAfter) {
		b.Failing = true
		return true
	}
	return false
}

// outcomeVerbs say how an attempt ended, after "N of M".
var outcomeVerbs = [nOutcomes]string{"answered", "refused", "timed out", "unreachable", "aborted"}

// failedText is "5 timed out" or "3 timed out, 2 refused".
func (b *Backend) failedText() string {
	var parts []string
	for _, o := range Failures {
		if n := b.Failures[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, outcomeVerbs[o]))
		}
	}
	return strings.Join(parts, ", ")
}

// Text says how the attempts through the backend went, after its
// address: ": 5 of 5 timed out", " answered 5 of 5", " answered 3 of 5,
// 2 timed out".
func (b *Backend) Text() string {
	switch {
	case b.Failed() == 0:
		return fmt.Sprintf(" answered %d of %d", b.Successes, b.Attempts)
	case b.Successes == 0:
		var o Outcome
		for _, x := range Failures {
			if b.Failures[x] == b.Failed() {
				o = x
			}
		}
		if o != Established {
			return fmt.Sprintf(": %d of %d %s", b.Failed(), b.Attempts, outcomeVerbs[o])
		}
		return fmt.Sprintf(": %d of %d failed (%s)", b.Failed(), b.Attempts, b.failedText())
	}
	return fmt.Sprintf(" answered %d of %d, %s", b.Successes, b.Attempts, b.failedText())
}

// BackendsText says how a destination's attempts went backend by
// backend, the failing ones first, each given by addr (which formats an
// address): "fails through 10.4.1.81:9092: 5 of 5 timed out;
// 10.4.1.82:9092 answered 5 of 5", or "through 10.4.1.81:9092 answered
// 5 of 5; ..." when none is failing; "" without backends.
func (d *Dest) BackendsText(addr func(netip.AddrPort) string) string {
	if len(d.Backends) == 0 {
		return ""
	}
	var failing, others []string
	for i := range d.Backends {
		b := &d.Backends[i]
		s := addr(b.Addr) + b.Text()
		if b.Failing {
			failing = append(failing, s)
		} else {
			others = append(others, s)
		}
	}
	if len(failing) == 0 {
		return "through " + strings.Join(others, "; ")
	}
	return "fails through " + strings.Join(append(failing, others...), "; ")
}
