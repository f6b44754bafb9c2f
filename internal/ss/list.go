package ss

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/filter"
	"github.com/socktrace/socktrace/internal/names"
	"github.com/socktrace/socktrace/internal/owner/cgroups"
	sockowners "github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/safetext"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/sslayout"
)

// resolveWait bounds how long -r waits for host names in all.
const resolveWait = 2 * time.Second

// List prints the sockets o selects to w, as ss prints them; width is the
// terminal's columns, 0 when w is not a terminal.
//
// The holders (-p) are found (a BPF iterator, else /proc) while the
// kernel lists the sockets; each read of the kernel's replies is then
// formatted while the next is made. -r needs every address first: it
// takes the whole list, then the names, then prints.
func List(w io.Writer, o *Options, width int) error {
	ownersc := make(chan procs.Table, 1)
	if o.Processes {
		go func() {
			t, _, _ := sockowners.Scan(nil)
			ownersc <- t
		}()
	} else {
		ownersc <- nil
	}
	var auto map[uint64]bool // the kernel's autobound sockets, if asked
	if filter.UsesAutobound(o.Expr) {
		as, err := snapshot.Dump(snapshot.Options{States: o.States, IPv4: o.Family == unix.AF_INET,
			IPv6: o.Family == unix.AF_INET6, Netns: o.Netns, AutoboundOnly: true})
		if err != nil {
			return err
		}
		auto = map[uint64]bool{}
		for _, s := range as {
			auto[s.Cookie] = true
		}
	}
	opts := snapshot.Options{
		States: o.States, IPv4: o.Family == unix.AF_INET, IPv6: o.Family == unix.AF_INET6,
		Netns: o.Netns, Info: o.Info, Mem: o.Memory,
	}
	cols := sslayout.Columns{State: !o.OneState(), Header: !o.NoHeader}
	f := newFormatter(o)
	if o.Resolve {
		socks, err := snapshot.Dump(opts)
		owners := <-ownersc
		if err != nil {
			return err
		}
		var kept []*snapshot.Socket
		var addrs []netip.Addr
		for i := range socks {
			if s := &socks[i]; selected(o, s, owners, auto) {
				kept = append(kept, s)
				addrs = append(addrs, s.Src, s.Dst)
			}
		}
		f.hosts.Resolve(addrs, resolveWait)
		t := sslayout.NewTable(w, cols, width)
		for _, s := range kept {
			row := f.row(s, owners[s.Inode])
			t.Add(&row)
		}
		return t.Close()
	}
	batches, dumped := snapshot.InBackground(func(each func([]snapshot.Socket) error) error {
		return snapshot.DumpEach(opts, each)
	})
	owners := <-ownersc
	t := sslayout.NewTable(w, cols, width)
	for b := range batches {
		for i := range b {
			if s := &b[i]; selected(o, s, owners, auto) {
				row := f.row(s, owners[s.Inode])
				t.Add(&row)
			}
		}
		snapshot.Release(b)
	}
	if err := <-dumped; err != nil {
		return err
	}
	return t.Close()
}

// selected says whether the socket passes the states and the expression.
func selected(o *Options, s *snapshot.Socket, owners procs.Table, auto map[uint64]bool) bool {
	if o.States != 0 && !o.States.Has(s.State) {
		return false
	}
	if o.Expr == nil {
		return true
	}
	var users []procs.Owner
	if s.Inode != 0 {
		users = owners[s.Inode]
	}
	subj := filter.OfSocket(s, users)
	subj.Autobound, subj.AutoboundKnown = auto[s.Cookie], auto != nil
	return o.Expr.Match(&subj)
}

// formatter turns sockets into ss's fields.
type formatter struct {
	o        *Options
	services names.Services
	hosts    *names.Hosts
	cgroups  *cgroups.Resolver
	ifnames  map[uint32]string
}

func newFormatter(o *Options) *formatter {
	f := &formatter{o: o, ifnames: map[uint32]string{}}
	if !o.Numeric {
		f.services = names.LoadServices()
	}
	if o.Resolve {
		f.hosts = names.NewHosts(nil)
	}
	if o.Extended {
		f.cgroups = cgroups.New("/")
		f.cgroups.MinRefresh = 0
	}
	return f
}

func (f *formatter) row(s *snapshot.Socket, users []procs.Owner) sslayout.Row {
	r := sslayout.Row{
		State: sslayout.StateName(uint8(s.State)),
		RecvQ: s.RecvQ, SendQ: s.SendQ,
		Local: f.addr(s, s.Src, s.V6Only, s.IfIndex), Peer: f.addr(s, s.Dst, s.V6Only, 0),
		LPort: sslayout.Port(s.SPort, f.services.Port(s.SPort)),
		PPort: sslayout.Port(s.DPort, f.services.Port(s.DPort)),
	}
	var ext strings.Builder
	if f.o.Processes && len(users) > 0 {
		us := make([]sslayout.Owner, len(users))
		for i, u := range users {
			us[i] = sslayout.Owner{Comm: safetext.Escape(u.Comm), PID: int(u.PID), FD: u.FD}
		}
		ext.WriteString(sslayout.Users(us))
	}
	if f.o.Timers && s.Timer != snapshot.TimerNone {
		name := s.Timer.String()
		if s.Timer > snapshot.TimerPersist {
			name = "unknown"
		}
		ext.WriteString(sslayout.Timer(name, s.Expires, s.Retrans))
	}
	if f.o.Extended {
		f.extended(&ext, s)
	}
	if f.o.Memory || f.o.Info {
		if !f.o.OneLine {
			ext.WriteString("\n\t")
		}
		if m := s.Mem; f.o.Memory && m != nil {
			fmt.Fprintf(&ext, " skmem:(r%d,rb%d,t%d,tb%d,f%d,w%d,o%d,bl%d,d%d)",
				m.RmemAlloc, m.RcvBuf, m.WmemAlloc, m.SndBuf, m.FwdAlloc, m.WmemQueued, m.OptMem, m.Backlog, m.Drops)
		}
		if f.o.Info && s.Info != nil {
			writeInfo(&ext, s, f.o)
		}
		if s.ULP != nil {
			writeULP(&ext, s.ULP)
		}
	}
	r.Ext = ext.String()
	return r
}

// addr is the address token: a host name with -r where one is known.
func (f *formatter) addr(s *snapshot.Socket, a netip.Addr, v6only int8, ifindex uint32) string {
	ifname := ""
	if ifindex != 0 {
		ifname = f.ifname(ifindex)
	}
	text := sslayout.Addr(s.Family, a, v6only, ifname)
	if f.hosts == nil || text == "*" || strings.HasPrefix(text, "*%") {
		return text
	}
	if name := safetext.Escape(f.hosts.Name(a)); name != a.String() && name != "" {
		if ifname != "" {
			name += "%" + ifname
		}
		return name
	}
	return text
}

func (f *formatter) ifname(i uint32) string {
	if n, ok := f.ifnames[i]; ok {
		return n
	}
	n := "if" + strconv.Itoa(int(i))
	if ifc, err := net.InterfaceByIndex(int(i)); err == nil {
		n = safetext.Escape(ifc.Name)
	}
	f.ifnames[i] = n
	return n
}

// extended writes ss -e's items.
func (f *formatter) extended(b *strings.Builder, s *snapshot.Socket) {
	if s.UID != 0 {
		fmt.Fprintf(b, " uid:%d", s.UID)
	}
	fmt.Fprintf(b, " ino:%d sk:%x", s.Inode, s.Cookie)
	if s.MarkKnown && s.Mark != 0 {
		fmt.Fprintf(b, " fwmark:0x%x", s.Mark)
	}
	if s.CgroupID != 0 {
		if p, ok := f.cgroups.Path(s.CgroupID); ok {
			b.WriteString(" cgroup:" + safetext.Escape(p))
		} else {
			fmt.Fprintf(b, " cgroup:unreachable:%x", s.CgroupID)
		}
	}
	if s.Family == unix.AF_INET6 && s.V6Only >= 0 {
		fmt.Fprintf(b, " v6only:%d", s.V6Only)
	}
	if s.ShutdownKnown {
		r, w := byte('<'), byte('>')
		if s.Shutdown&1 != 0 {
			r = '-'
		}
		if s.Shutdown&2 != 0 {
			w = '-'
		}
		b.WriteString(" " + string(r) + "-" + string(w))
	}
}
