package pipeline

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/identity"
	"github.com/socktrace/socktrace/internal/netnsname"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owners"
	"github.com/socktrace/socktrace/internal/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// takeSnap lists the sockets of the chosen namespaces, in the states
// asked for, with the processes that hold them.
func takeSnap(o *Options) (*snap, error) {
	// The owners are found (by a BPF iterator, else in /proc) while the
	// kernel lists the sockets: the two overlap on two CPUs.
	type scan struct {
		t      procs.Table
		method string
		err    error
	}
	scanned := make(chan scan, 1)
	go func() {
		t, m, err := owners.Scan(nil)
		scanned <- scan{t, m, err}
	}()
	start := events.Monotonic()
	socks, err := dumpNamespaces(o, o.Filter.States)
	end := events.Monotonic()
	sc := <-scanned
	if err != nil {
		return nil, err
	}
	if o.Once && o.Output == "table" {
		how := "socket owners from a " + sc.method
		if sc.err != nil {
			how = "socket owners from " + sc.method + " (no BPF iterator: " + sc.err.Error() + ")"
		}
		fmt.Fprintf(os.Stderr, "socktrace: %s\n", how)
	}
	owners := sc.t
	return &snap{socks: socks, owners: owners, start: start, end: end, at: time.Now()}, nil
}

// Once is --once: list the sockets, like ss -tanpo, and exit.
func Once(o *Options) error {
	if err := checkPrivileges(o, false); err != nil {
		return err
	}
	s, err := takeSnap(o)
	if err != nil {
		return err
	}
	stdout := bufio.NewWriterSize(os.Stdout, 64<<10)
	w := newWriter(o, stdout)
	// One row at a time, straight to the output: nothing to remember.
	var r timeline.Row
	ids := identity.NewResolver(o.HostRoot, o.KubeletLogDir)
	w.SetNetnsNames(netnsname.New(o.HostRoot, ids).Name)
	byPID := map[uint32]*identity.Identity{}
	// -r: the names first, looked up in parallel and waited for (for a
	// bounded time), as ss does in its listing.
	if t, ok := w.(*output.Table); ok && o.Table.Resolve {
		var addrs []netip.Addr
		for i := range s.socks {
			addrs = append(addrs, s.socks[i].Src, s.socks[i].Dst)
		}
		t.ResolveNames(addrs)
	}
	for i := range s.socks {
		timeline.FillRow(&r, &s.socks[i], s.owners)
		if r.OwnerKnown {
			id, ok := byPID[r.OwnerPID]
			if !ok {
				id = ids.ByPID(r.OwnerPID)
				byPID[r.OwnerPID] = id
			}
			r.OwnerID = id
		}
		subj := subjectOfRow(&r)
		if !o.Match(&subj) {
			continue
		}
		if err := w.Socket(&r, s.at); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}
	if err := stdout.Flush(); err != nil && !isBrokenPipe(err) {
		return err
	}
	return nil
}

// dumpNamespaces lists the sockets in the given states of the namespaces
// --netns names.
func dumpNamespaces(o *Options, states tcpstate.Mask) ([]snapshot.Socket, error) {
	paths := []string{o.Netns}
	if o.Netns == "all" {
		var err error
		if paths, err = snapshot.Namespaces(); err != nil {
			return nil, err
		}
	}
	var socks []snapshot.Socket
	for i, p := range paths {
		s, err := snapshot.Dump(snapshot.Options{States: states, IPv4: o.Filter.IPv4, IPv6: o.Filter.IPv6, Netns: p,
			Info: o.Table.Info, Mem: o.Mem})
		if err != nil {
			if o.Netns == "all" && i > 0 {
				continue // its process or thread went away meanwhile
			}
			return nil, err
		}
		socks = append(socks, s...)
	}
	return socks, nil
}
