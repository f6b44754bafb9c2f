package pipeline

import (
	"fmt"
	"os"
	"strings"

	"github.com/socktrace/socktrace/internal/nat"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// openNAT is the resolver of NAT backends of a live run: it enters the
// namespaces of the sockets' owners, or the one --netns names.
func openNAT(o *Options) *nat.Resolver {
	no := nat.Options{
		ProcRoot: strings.TrimSuffix(o.HostRoot, "/") + "/proc",
		Warn:     func(s string) { fmt.Fprintf(os.Stderr, "socktrace: %s\n", s) },
	}
	if o.Netns != "" && o.Netns != "all" {
		no.Paths = []string{o.Netns}
	}
	return nat.New(no)
}

// natConn is the connection of a transition, for a NAT lookup.
func natConnOf(t *record.Transition) nat.Conn {
	c := nat.Conn{Netns: t.Netns, Src: t.Src, Dst: t.Dst, SPort: t.SPort, DPort: t.DPort}
	if t.OwnerKnown {
		c.PID, c.TID = t.OwnerPID, t.OwnerTID
	}
	return c
}

// natConnOfRow is the connection of a socket's row.
func natConnOfRow(r *timeline.Row) nat.Conn {
	c := nat.Conn{Netns: r.Netns, Src: r.Src, Dst: r.Dst, SPort: r.SPort, DPort: r.DPort}
	if r.OwnerKnown {
		c.PID, c.TID = r.OwnerPID, r.OwnerTID
	}
	return c
}

// natRow gives a socket found by the snapshot (or --once) its backend:
// a connection, not a listener.
func natRow(n *nat.Resolver, r *timeline.Row) {
	if n == nil || r.State == tcpstate.Listen || r.State == tcpstate.Close || r.DPort == 0 {
		return
	}
	r.Actual, _ = n.Lookup(natConnOfRow(r))
}

// acceptedBy tells the rows of connections a listener among rows
// accepted (their local port is the listener's): the other side made
// them, nothing of ours was translated, and a server's thousands of
// them need no lookup each.
func acceptedBy(rows []*timeline.Row) func(*timeline.Row) bool {
	type key struct {
		netns uint32
		port  uint16
	}
	ports := map[key]bool{}
	for _, r := range rows {
		if r.State == tcpstate.Listen {
			ports[key{r.Netns, r.SPort}] = true
		}
	}
	return func(r *timeline.Row) bool { return r.State != tcpstate.Listen && ports[key{r.Netns, r.SPort}] }
}
