package reconcile

import (
	"fmt"
	"os"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// dumpAll lists the namespaces to check and dumps them, with the owners
// of their sockets. It runs in its own goroutine and touches nothing of
// the Reconciler but its config.
func (rc *Reconciler) dumpAll(rowsNetns map[uint32]bool) *Result {
	o := &rc.cfg
	paths := map[uint32]string{}
	needList := o.Netns == "all"
	for ns := range rowsNetns {
		if ns != rc.own && (o.NetnsInode == 0 || ns != o.NetnsInode) {
			needList = true
		}
	}
	switch {
	case needList:
		list, err := snapshot.Namespaces()
		if err != nil {
			return &Result{Err: fmt.Errorf("reconcile: %w", err)}
		}
		for _, path := range list {
			if ino, err := snapshot.NetnsInode(path); err == nil {
				if _, ok := paths[ino]; !ok {
					paths[ino] = path
				}
			}
		}
	}
	if _, ok := paths[rc.own]; ok {
		paths[rc.own] = "" // socktrace's own: no need to enter it
	}
	// The namespaces in the scope of the snapshot, always.
	switch o.Netns {
	case "":
		paths[rc.own] = "" // socktrace's own: no need to enter it
	case "all":
	default:
		paths[o.NetnsInode] = o.Netns
	}
	d := timeline.Dump{Netns: map[uint32]bool{}, Gone: map[uint32]bool{}}
	for ns := range rowsNetns {
		if _, ok := paths[ns]; !ok {
			d.Gone[ns] = true
		}
	}
	// Only the namespaces of the scope and those holding rows: a host
	// with a thousand idle containers is not dumped for nothing.
	var todo []string
	var inos []uint32
	for ino, path := range paths {
		if o.Netns == "all" || rowsNetns[ino] || ino == rc.own && o.Netns == "" || ino == o.NetnsInode {
			todo = append(todo, path)
			inos = append(inos, ino)
		}
	}
	// Time-wait sockets are most of a busy host's and needed only for
	// the time-wait count: dumped only for the gauges.
	dumpStates := tcpstate.All
	if !o.Gauges {
		dumpStates &^= tcpstate.MaskOf(tcpstate.TimeWait)
		d.NoTimeWait = true
	}
	d.Start = events.Monotonic()
	began := time.Now()
	for i, path := range todo {
		socks, err := snapshot.Dump(snapshot.Options{States: dumpStates, IPv4: o.IPv4, IPv6: o.IPv6, Netns: path})
		if err != nil {
			// Gone meanwhile, or not enterable: no evidence either way,
			// unless it no longer exists at all.
			if _, serr := os.Stat(path); serr != nil && path != "" {
				if !stillExists(inos[i]) {
					d.Gone[inos[i]] = true
				}
			}
			continue
		}
		d.Netns[inos[i]] = true
		if d.Sockets == nil {
			d.Sockets = socks // one namespace (the usual): no copy
		} else {
			d.Sockets = append(d.Sockets, socks...)
		}
	}
	d.End = events.Monotonic()
	took := time.Since(began)
	// Owners are looked for in /proc only when needed (see ScanOwners):
	// walking every process's descriptors costs more than the dump.
	if o.Gauges {
		d.Owners, _, _ = owners.Scan(dumpInodes(d.Sockets))
	}
	states := o.States
	if states == 0 {
		states = tcpstate.All
	}
	// Sockets to add are those the start-up snapshot takes (the filter's
	// states); time-wait and request sockets, only counted, must pass
	// the whole filter.
	keep := o.Keep
	d.Add = func(s *snapshot.Socket) bool {
		return states.Has(s.State) && (!timeline.IsMini(s) || keep(s))
	}
	return &Result{Dump: d, paths: paths, Took: took}
}

// dumpInodes are the inodes of the dump's sockets: the gauges need the
// owners of its CLOSE-WAIT sockets and listeners, and of any row the
// reconciliation adds.
func dumpInodes(socks []snapshot.Socket) map[uint32]bool {
	want := map[uint32]bool{}
	for i := range socks {
		s := &socks[i]
		if s.Inode != 0 {
			want[s.Inode] = true
		}
	}
	return want
}

// stillExists looks for a namespace by inode among all of them.
func stillExists(ino uint32) bool {
	list, err := snapshot.Namespaces()
	if err != nil {
		return true
	}
	for _, path := range list {
		if i, err := snapshot.NetnsInode(path); err == nil && i == ino {
			return true
		}
	}
	return false
}
