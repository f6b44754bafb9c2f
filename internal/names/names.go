// Package names turns ports into service names (/etc/services, as ss does
// without -n) and addresses into host names (ss -r), without ever making
// the caller wait: a name not yet known is looked up in the background and
// the address is shown meanwhile.
package names

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Services maps TCP ports to service names.
type Services map[uint16]string

// LoadServices reads /etc/services; a missing file gives an empty map.
// Like ss, it leaves out the ephemeral ports (ip_local_port_range): a
// client's local port 57000 is not "dircproxy".
func LoadServices() Services {
	f, err := os.Open("/etc/services")
	if err != nil {
		return Services{}
	}
	defer f.Close()
	s := ParseServices(f)
	if lo, hi, ok := EphemeralRange(); ok {
		s.Drop(lo, hi)
	}
	return s
}

// Drop forgets the names of the ports from lo to hi.
func (s Services) Drop(lo, hi uint16) {
	for p := range s {
		if p >= lo && p <= hi {
			delete(s, p)
		}
	}
}

// EphemeralRange is net.ipv4.ip_local_port_range of this namespace.
func EphemeralRange() (lo, hi uint16, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	l, err1 := strconv.ParseUint(f[0], 10, 16)
	h, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || l > h {
		return 0, 0, false
	}
	return uint16(l), uint16(h), true
}

// ParseServices reads services(5) lines, keeping the first name of each
// TCP port.
func ParseServices(r io.Reader) Services {
	s := Services{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		num, proto, ok := strings.Cut(fields[1], "/")
		if !ok || proto != "tcp" {
			continue
		}
		p, err := strconv.ParseUint(num, 10, 16)
		if err != nil {
			continue
		}
		if _, dup := s[uint16(p)]; !dup {
			s[uint16(p)] = fields[0]
		}
	}
	return s
}

// Port returns the service name of p, or its number.
func (s Services) Port(p uint16) string {
	if n, ok := s[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// LookupFunc resolves an address to names, like net.Resolver.LookupAddr.
type LookupFunc func(ctx context.Context, addr string) ([]string, error)

// Hosts resolves addresses to host names in the background and caches
// the answers, failures included.
type Hosts struct {
	lookup  LookupFunc
	timeout time.Duration
	queue   chan netip.Addr

	mu    sync.Mutex
	cache map[netip.Addr]string // "" while pending or when there is no name
}

// maxCached bounds the cache; past it, it starts over.
const maxCached = 65536

// NewHosts starts workers that resolve with lookup (nil: the system
// resolver).
func NewHosts(lookup LookupFunc) *Hosts {
	if lookup == nil {
		lookup = net.DefaultResolver.LookupAddr
	}
	h := &Hosts{
		lookup:  lookup,
		timeout: 3 * time.Second,
		queue:   make(chan netip.Addr, 1024),
		cache:   make(map[netip.Addr]string),
	}
	for i := 0; i < 4; i++ {
		go h.work()
	}
	return h
}

func (h *Hosts) work() {
	for a := range h.queue {
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		names, err := h.lookup(ctx, a.String())
		cancel()
		if err != nil || len(names) == 0 {
			continue // stays "": shown as the address
		}
		h.mu.Lock()
		h.cache[a] = strings.TrimSuffix(names[0], ".")
		h.mu.Unlock()
	}
}

// Name returns the host name of a if known, else a's text form, and
// starts a lookup the first time it sees a. It never blocks.
func (h *Hosts) Name(a netip.Addr) string {
	if a.IsUnspecified() {
		return a.String()
	}
	h.mu.Lock()
	name, seen := h.cache[a]
	if !seen {
		if len(h.cache) >= maxCached {
			h.cache = make(map[netip.Addr]string)
		}
		h.cache[a] = ""
	}
	h.mu.Unlock()
	if !seen {
		select {
		case h.queue <- a:
		default: // busy: show the address, try again another time
			h.mu.Lock()
			delete(h.cache, a)
			h.mu.Unlock()
		}
	}
	if name == "" {
		return a.String()
	}
	return name
}

// Resolve looks up, in parallel, every address of addrs not known yet,
// and waits for the answers up to timeout in all: a listing (ss -r,
// --once -r) prints names, where a stream never waits. Addresses still
// unanswered then show as addresses.
func (h *Hosts) Resolve(addrs []netip.Addr, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var todo []netip.Addr
	asked := map[netip.Addr]bool{}
	h.mu.Lock()
	for _, a := range addrs {
		if a.IsUnspecified() {
			continue // 0.0.0.0 and :: have no name worth asking for
		}
		if _, seen := h.cache[a]; !seen && !asked[a] {
			asked[a] = true
			todo = append(todo, a)
		}
	}
	h.mu.Unlock()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, a := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			names, err := h.lookup(ctx, a.String())
			name := ""
			if err == nil && len(names) > 0 {
				name = strings.TrimSuffix(names[0], ".")
			}
			h.mu.Lock()
			if len(h.cache) >= maxCached {
				h.cache = make(map[netip.Addr]string)
			}
			h.cache[a] = name
			h.mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
