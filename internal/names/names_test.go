package names

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseServices(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Services
	}{
		{"empty", "", Services{}},
		{"one", "ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol\n", Services{22: "ssh"}},
		{"tcp only", "domain 53/tcp\ndomain 53/udp\nsyslog 514/udp\nsctp-x 9/sctp\n", Services{53: "domain"}},
		{"first name of a port wins", "http 80/tcp www\nwww 80/tcp\nhttp-alt 8080/tcp webcache\nwebcache 8080/tcp\n",
			Services{80: "http", 8080: "http-alt"}},
		{"udp line first does not count", "foo 7000/udp\nbar 7000/tcp\n", Services{7000: "bar"}},
		{"aliases are not names", "kerberos 88/tcp kerberos5 krb5 kerberos-sec\n", Services{88: "kerberos"}},
		{"comments and blanks", "# a comment\n\n   \n# https 443/tcp\nhttps 443/tcp # http over TLS\n", Services{443: "https"}},
		{"comment glued to the entry", "imaps 993/tcp#IMAP over TLS\n", Services{993: "imaps"}},
		{"leading whitespace", "   pop3\t110/tcp\n", Services{110: "pop3"}},
		{"CRLF", "smtp 25/tcp\r\nftp 21/tcp\r\n", Services{25: "smtp", 21: "ftp"}},
		{"no newline at the end", "telnet 23/tcp", Services{23: "telnet"}},
		{"port 0 and 65535", "zero 0/tcp\nmax 65535/tcp\n", Services{0: "zero", 65535: "max"}},
		{"malformed lines skipped", strings.Join([]string{
			"lonely",
			"noproto 81",
			"badport abc/tcp",
			"toobig 65536/tcp",
			"negative -1/tcp",
			"empty /tcp",
			"upper 82/TCP",
			"slashes 83/tcp/x",
			"good 84/tcp",
		}, "\n"), Services{84: "good"}},
	}
	for _, c := range tests {
		got := ParseServices(strings.NewReader(c.text))
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ParseServices = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestServicesPort(t *testing.T) {
	s := ParseServices(strings.NewReader("ssh 22/tcp\nhttps 443/tcp\nXmlIpcRegSvc 9092/tcp\nzero 0/tcp\n"))
	tests := []struct {
		port uint16
		want string
	}{
		{22, "ssh"},
		{443, "https"},
		{9092, "XmlIpcRegSvc"},
		{0, "zero"},
		{23, "23"},
		{80, "80"},
		{1, "1"},
		{65535, "65535"},
	}
	for _, c := range tests {
		if got := s.Port(c.port); got != c.want {
			t.Errorf("Port(%d) = %q, want %q", c.port, got, c.want)
		}
	}
	var empty Services
	if got := empty.Port(443); got != "443" {
		t.Errorf("nil Services: Port(443) = %q, want 443", got)
	}
	if got := (Services{}).Port(8080); got != "8080" {
		t.Errorf("empty Services: Port(8080) = %q, want 8080", got)
	}
}

// TestLoadServices checks LoadServices against ParseServices of the same
// file, whatever the system's /etc/services holds.
func TestLoadServices(t *testing.T) {
	got := LoadServices()
	if got == nil {
		t.Fatal("LoadServices() = nil, want a map")
	}
	f, err := os.Open("/etc/services")
	if err != nil {
		if len(got) != 0 {
			t.Errorf("no /etc/services (%v), but LoadServices has %d entries", err, len(got))
		}
		return
	}
	defer f.Close()
	want := ParseServices(f)
	if lo, hi, ok := EphemeralRange(); ok {
		want.Drop(lo, hi) // like ss, no names for ephemeral ports
		for p := range got {
			if p >= lo && p <= hi {
				t.Errorf("port %d is in the ephemeral range %d-%d but has a name", p, lo, hi)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadServices() differs from ParseServices(/etc/services): %d vs %d entries", len(got), len(want))
	}
}

// nameWithin calls h.Name(a) and fails if it takes longer than limit:
// Name must never wait for a lookup.
func nameWithin(t *testing.T, h *Hosts, a netip.Addr, limit time.Duration) string {
	t.Helper()
	done := make(chan string, 1)
	go func() { done <- h.Name(a) }()
	select {
	case s := <-done:
		return s
	case <-time.After(limit):
		t.Fatalf("Name(%v) blocked for more than %v", a, limit)
		return ""
	}
}

// eventually polls h.Name(a) until it returns want.
func eventually(t *testing.T, h *Hosts, a netip.Addr, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := nameWithin(t, h, a, time.Second)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Name(%v) = %q, want %q in time", a, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockingLookup never answers until release is closed; it counts calls
// and records the addresses asked for.
type blockingLookup struct {
	release chan struct{}
	calls   atomic.Int32
	mu      sync.Mutex
	asked   []string
	answer  func(addr string) ([]string, error)
}

func newBlockingLookup(answer func(string) ([]string, error)) *blockingLookup {
	return &blockingLookup{release: make(chan struct{}), answer: answer}
}

func (b *blockingLookup) lookup(ctx context.Context, addr string) ([]string, error) {
	b.calls.Add(1)
	b.mu.Lock()
	b.asked = append(b.asked, addr)
	b.mu.Unlock()
	<-b.release
	return b.answer(addr)
}

func TestHostsNeverBlock(t *testing.T) {
	bl := newBlockingLookup(func(addr string) ([]string, error) {
		return []string{"host-" + strings.NewReplacer(".", "-", ":", "-").Replace(addr) + ".example."}, nil
	})
	h := NewHosts(bl.lookup)
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("::1"),
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("2001:db8::1"),
	}
	for _, a := range addrs {
		// First sight: the address, at once, while the lookup hangs.
		if got := nameWithin(t, h, a, time.Second); got != a.String() {
			t.Errorf("first Name(%v) = %q, want %q", a, got, a.String())
		}
		// Still pending: the address again, and no second lookup.
		if got := nameWithin(t, h, a, time.Second); got != a.String() {
			t.Errorf("second Name(%v) = %q, want %q", a, got, a.String())
		}
	}
	// The lookups started in the background (four workers, four addresses).
	deadline := time.Now().Add(5 * time.Second)
	for bl.calls.Load() < int32(len(addrs)) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := bl.calls.Load(); n != int32(len(addrs)) {
		t.Fatalf("%d lookups, want %d", n, len(addrs))
	}
	bl.mu.Lock()
	asked := append([]string(nil), bl.asked...)
	bl.mu.Unlock()
	want := []string{"127.0.0.1", "::1", "192.0.2.1", "2001:db8::1"}
	if !sameSet(asked, want) {
		t.Errorf("looked up %q, want %q", asked, want)
	}
	close(bl.release)
	// Once answered, the name, without the root's trailing dot.
	eventually(t, h, addrs[0], "host-127-0-0-1.example")
	eventually(t, h, addrs[1], "host---1.example")
	eventually(t, h, addrs[2], "host-192-0-2-1.example")
	eventually(t, h, addrs[3], "host-2001-db8--1.example")
	if n := bl.calls.Load(); n != int32(len(addrs)) {
		t.Errorf("%d lookups after the answers, want %d (cached)", n, len(addrs))
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestHostsFailures(t *testing.T) {
	tests := []struct {
		name   string
		answer func(string) ([]string, error)
	}{
		{"error", func(string) ([]string, error) { return nil, errors.New("no such host") }},
		{"no names", func(string) ([]string, error) { return nil, nil }},
		{"empty list", func(string) ([]string, error) { return []string{}, nil }},
		{"error with names", func(string) ([]string, error) { return []string{"x.example."}, errors.New("partial") }},
	}
	for _, c := range tests {
		var calls atomic.Int32
		answered := make(chan struct{}, 1)
		h := NewHosts(func(ctx context.Context, addr string) ([]string, error) {
			calls.Add(1)
			defer func() { answered <- struct{}{} }()
			return c.answer(addr)
		})
		a := netip.MustParseAddr("192.0.2.55")
		if got := nameWithin(t, h, a, time.Second); got != "192.0.2.55" {
			t.Errorf("%s: first Name = %q", c.name, got)
		}
		select {
		case <-answered:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: lookup never ran", c.name)
		}
		// The failure is cached: the address is shown, not asked again.
		for i := 0; i < 3; i++ {
			if got := nameWithin(t, h, a, time.Second); got != "192.0.2.55" {
				t.Errorf("%s: Name after failure = %q", c.name, got)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if n := calls.Load(); n != 1 {
			t.Errorf("%s: %d lookups, want 1", c.name, n)
		}
	}
}

func TestHostsLookupContext(t *testing.T) {
	type call struct {
		addr     string
		deadline time.Time
		ok       bool
	}
	got := make(chan call, 1)
	h := NewHosts(func(ctx context.Context, addr string) ([]string, error) {
		d, ok := ctx.Deadline()
		got <- call{addr, d, ok}
		return []string{"loopback.example"}, nil
	})
	start := time.Now()
	if s := nameWithin(t, h, netip.MustParseAddr("::1"), time.Second); s != "::1" {
		t.Errorf("first Name(::1) = %q", s)
	}
	select {
	case c := <-got:
		if c.addr != "::1" {
			t.Errorf("looked up %q, want ::1", c.addr)
		}
		if !c.ok {
			t.Errorf("lookup context has no deadline")
		} else if d := c.deadline.Sub(start); d <= 0 || d > 10*time.Second {
			t.Errorf("lookup deadline %v after the call, want a few seconds", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lookup never ran")
	}
	eventually(t, h, netip.MustParseAddr("::1"), "loopback.example")
}

// TestHostsQueueFull: with every worker stuck and the queue full, Name
// still answers at once, and an address it could not queue is asked for
// again the next time it is seen.
func TestHostsQueueFull(t *testing.T) {
	bl := newBlockingLookup(func(addr string) ([]string, error) {
		return []string{"n" + addr + "."}, nil
	})
	h := NewHosts(bl.lookup)
	const n = 4 + 1024 + 50 // workers + queue + some that cannot fit
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
	}
	done := make(chan string, 1)
	go func() {
		for _, a := range addrs {
			if got := h.Name(a); got != a.String() {
				done <- fmt.Sprintf("Name(%v) = %q", a, got)
				return
			}
		}
		done <- ""
	}()
	select {
	case msg := <-done:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%d calls to Name with the workers stuck did not return", n)
	}
	h.mu.Lock()
	cached := len(h.cache)
	var dropped []netip.Addr
	for _, a := range addrs {
		if _, ok := h.cache[a]; !ok {
			dropped = append(dropped, a)
		}
	}
	h.mu.Unlock()
	if cached > 4+1024 || cached < 1024 {
		t.Errorf("%d addresses pending, want between 1024 and 1028", cached)
	}
	if len(dropped) == 0 {
		t.Fatalf("no address was turned away with the queue full")
	}
	close(bl.release)
	// Now the workers run: a turned-away address is queued on its next
	// sighting and gets its name.
	a := dropped[len(dropped)-1]
	eventually(t, h, a, "n"+a.String())
	eventually(t, h, addrs[0], "n"+addrs[0].String())
}

func TestHostsConcurrent(t *testing.T) {
	var calls atomic.Int32
	h := NewHosts(func(ctx context.Context, addr string) ([]string, error) {
		calls.Add(1)
		return []string{"h" + addr}, nil
	})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 20)})
				if got := h.Name(a); got != a.String() && got != "h"+a.String() {
					t.Errorf("Name(%v) = %q", a, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 20; i++ {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		eventually(t, h, a, "h"+a.String())
	}
	if n := calls.Load(); n != 20 {
		t.Errorf("%d lookups for 20 addresses, want 20", n)
	}
}

func ExampleServices_Port() {
	s := ParseServices(strings.NewReader("https 443/tcp\n"))
	fmt.Println(s.Port(443), s.Port(8443))
	// Output: https 8443
}
