package pipeline

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/nat"
	"github.com/socktrace/socktrace/internal/output"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/owner/netnsname"
	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// takeSnap lists the sockets of the chosen namespaces, in the states
// asked for, with the processes that hold them.
func takeSnap(o *Options) (*snap, error) {
	// The owners are found (by a BPF iterator, else in /proc) while the
	// kernel lists the sockets: the two overlap on two CPUs.
	ownersc := scanOwners(o)
	start := events.Monotonic()
	socks, err := dumpNamespaces(o, o.Filter.States)
	end := events.Monotonic()
	owners := <-ownersc
	if err != nil {
		return nil, err
	}
	return &snap{socks: socks, owners: owners, start: start, end: end, at: time.Now()}, nil
}

// Once is --once: list the sockets, like ss -tanpo, and exit. The
// owners are found (a BPF iterator, else /proc) while the kernel starts
// listing the sockets, and each read of the kernel's replies is printed
// while the next is made: on two CPUs the listing takes about as long as
// the dump alone.
func Once(o *Options) error {
	if err := checkPrivileges(o, false); err != nil {
		return err
	}
	if o.Output == "table" && o.Table.Resolve {
		return onceResolved(o) // names first: it needs every address
	}
	ownersc := scanOwners(o)
	at := time.Now()
	batches, dumped := snapshot.InBackground(func(each func([]snapshot.Socket) error) error {
		return dumpNamespacesEach(o, o.Filter.States, each)
	})
	owners := <-ownersc
	p := newLister(o)
	for b := range batches {
		for i := range b {
			if err := p.socket(&b[i], owners, at); err != nil {
				if isBrokenPipe(err) {
					return nil
				}
				return err
			}
		}
		snapshot.Release(b)
	}
	if err := <-dumped; err != nil {
		return err
	}
	return p.flush()
}

// onceResolved is Once with -r in the table: the whole list first, then
// the names of all its addresses looked up in parallel and waited for (a
// bounded time), as ss does, then the lines.
func onceResolved(o *Options) error {
	s, err := takeSnap(o)
	if err != nil {
		return err
	}
	p := newLister(o)
	var addrs []netip.Addr
	for i := range s.socks {
		addrs = append(addrs, s.socks[i].Src, s.socks[i].Dst)
	}
	p.w.(*output.Table).ResolveNames(addrs)
	for i := range s.socks {
		if err := p.socket(&s.socks[i], s.owners, s.at); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return err
		}
	}
	return p.flush()
}

// lister writes --once's rows, with their owners' identities.
type lister struct {
	o      *Options
	stdout *bufio.Writer
	w      writer
	ids    *identity.Resolver
	pids   *identity.PIDs
	nat    *nat.Resolver
	r      timeline.Row
}

func newLister(o *Options) *lister {
	stdout := bufio.NewWriterSize(os.Stdout, 64<<10)
	p := &lister{o: o, stdout: stdout, w: newWriter(o, stdout),
		ids: identity.NewResolver(o.HostRoot, o.KubeletLogDir, o.CRISocket)}
	p.pids = p.ids.PIDs()
	p.nat = openNAT(o)
	p.w.SetNetnsNames(netnsname.New(o.HostRoot, p.ids).Name)
	return p
}

// socket writes one socket's row, if it passes the filter.
func (p *lister) socket(s *snapshot.Socket, owners procs.Table, at time.Time) error {
	r := &p.r
	timeline.FillRow(r, s, owners)
	if r.OwnerKnown {
		r.OwnerID = p.pids.Of(r.OwnerPID)
	}
	subj := subjectOfRow(r)
	if !p.o.Match(&subj) {
		return nil
	}
	natRow(p.nat, r)
	return p.w.Socket(r, at)
}

func (p *lister) flush() error {
	p.nat.Close()
	if err := p.stdout.Flush(); err != nil && !isBrokenPipe(err) {
		return err
	}
	return nil
}

// scanOwners finds the sockets' holders in the background; --once says
// how on stderr, in the table and in JSON alike (stdout stays the
// listing).
func scanOwners(o *Options) <-chan procs.Table {
	c := make(chan procs.Table, 1)
	go func() {
		t, method, err := owners.Scan(nil)
		if o.Once {
			how := "socket owners from a " + method
			if err != nil {
				how = "socket owners from " + method + " (no BPF iterator: " + err.Error() + ")"
			}
			fmt.Fprintf(os.Stderr, "socktrace: %s\n", how)
		}
		c <- t
	}()
	return c
}

// dumpNamespacesEach is dumpNamespaces that hands each read of the
// kernel's replies to each as it comes.
func dumpNamespacesEach(o *Options, states tcpstate.Mask, each func([]snapshot.Socket) error) error {
	paths := []string{o.Netns}
	if o.Netns == "all" {
		var err error
		if paths, err = snapshot.Namespaces(); err != nil {
			return err
		}
	}
	opts := func(p string) snapshot.Options {
		return snapshot.Options{States: states, IPv4: o.Filter.IPv4, IPv6: o.Filter.IPv6, Netns: p, Info: o.Table.Info, Mem: o.Mem}
	}
	// The first namespace is handed over as it is read; the others are
	// read meanwhile, side by side (as many at once as there are other
	// CPUs), and handed over in turn, in the order of paths.
	type later struct {
		batches [][]snapshot.Socket
		done    chan struct{}
	}
	rest := make([]*later, len(paths))
	for i := range rest {
		rest[i] = &later{done: make(chan struct{})}
	}
	if len(paths) > 1 {
		sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))
		go func() {
			for i := 1; i < len(paths); i++ {
				l := rest[i]
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; close(l.done) }()
					// An error: its process or thread went away meanwhile.
					snapshot.DumpEach(opts(paths[i]), func(b []snapshot.Socket) error {
						l.batches = append(l.batches, b)
						return nil
					})
				}()
			}
		}()
	}
	if err := snapshot.DumpEach(opts(paths[0]), each); err != nil {
		return err
	}
	for _, l := range rest[1:] {
		<-l.done
		for _, b := range l.batches {
			if err := each(b); err != nil {
				return err
			}
		}
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
	// The namespaces are listed side by side, as many at once as there
	// are CPUs (the kernel's work of each dump is on the CPU of the thread
	// that reads it), and kept in the order of paths.
	type result struct {
		socks []snapshot.Socket
		err   error
	}
	results := make([]result, len(paths))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i].socks, results[i].err = snapshot.Dump(snapshot.Options{States: states, IPv4: o.Filter.IPv4, IPv6: o.Filter.IPv6, Netns: p,
				Info: o.Table.Info, Mem: o.Mem})
		}()
	}
	wg.Wait()
	var socks []snapshot.Socket
	for i, r := range results {
		if r.err != nil {
			if o.Netns == "all" && i > 0 {
				continue // its process or thread went away meanwhile
			}
			return nil, r.err
		}
		socks = append(socks, r.socks...)
	}
	return socks, nil
}
