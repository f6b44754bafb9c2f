package output

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/drops"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Detail is what the table shows after a transition's error, where it
// explains something: "2 SYN rexmit", "RST rcvd"; with info (-i), every
// close's totals too: "1.2MB/3.4KB 12ms rtt 3 rexmit".
func Detail(t *record.Transition, info bool) string {
	var parts []string
	closing := t.New == tcpstate.Close
	if t.Old == tcpstate.SynSent && t.SynRetrans > 0 {
		parts = append(parts, strconv.Itoa(int(t.SynRetrans))+" SYN rexmit")
	}
	handshake := t.Old == tcpstate.SynSent
	dropped := t.Drops > 0 && t.Kind == events.KindTransition && (closing || handshake)
	allSent := dropped && handshake && t.DropDir == events.DropSent && int(t.Drops) >= 1+int(t.SynRetrans)
	if t.Old == tcpstate.SynSent && closing && !t.RstReceived && t.Kind == events.KindTransition &&
		(t.SkErr == 0 || unix.Errno(t.SkErr) == unix.ETIMEDOUT) && !allSent && !(dropped && t.DropDir == events.DropReceived) {
		parts = append(parts, "no reply") // nothing answered the SYNs
	}
	if dropped {
		// Dropped on this host: every SYN (none left), or SYN-ACKs.
		parts = append(parts, drops.Cause(t.Drops, handshake, t.DropReasonName, t.DropDir))
	}
	if closing && t.RstReceived {
		parts = append(parts, "RST rcvd")
	}
	if closing && t.RstSent {
		parts = append(parts, "RST sent")
	}
	if info && t.TCPStats && (closing || t.New == tcpstate.Established) {
		if closing && t.Old != tcpstate.SynSent {
			parts = append(parts, Bytes(t.BytesAcked)+"/"+Bytes(t.BytesReceived))
		}
		if t.SRTT > 0 {
			parts = append(parts, RTT(t.SRTT)+" rtt")
		}
		if closing && t.Old != tcpstate.SynSent && t.TotalRetrans > 0 {
			parts = append(parts, strconv.Itoa(int(t.TotalRetrans))+" rexmit")
		}
		if closing && t.LifetimeKnown {
			parts = append(parts, "lived "+Age(t.Lifetime))
		}
	}
	return strings.Join(parts, " ")
}

// Bytes is a byte count the way people read it: 512B, 3.4KB, 1.2MB.
func Bytes(n uint64) string {
	switch {
	case n < 1000:
		return strconv.FormatUint(n, 10) + "B"
	case n < 1000*1000:
		return fmt.Sprintf("%.1fKB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1fGB", float64(n)/1e9)
}

// RTT is a round-trip time: 45us, 1.2ms, 120ms.
func RTT(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.Itoa(int(d/time.Microsecond)) + "us"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}
