// Package testdns is a small authoritative DNS server for tests, over UDP
// and TCP, inside a test's network namespace: it answers A, AAAA and
// CNAME queries from a table the test changes as it goes. It runs where
// Debian's dnsmasq cannot (the kernel matrix's VMs); tests that can use
// the real thing do.
package testdns

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Server answers from its records.
type Server struct {
	mu      sync.Mutex
	addrs   map[string][]netip.Addr // by lower-case name with the final dot
	cnames  map[string]string
	ttl     uint32
	udp     net.PacketConn
	tcp     net.Listener
	Addr    netip.AddrPort
	Queries int
}

// Start serves on 127.0.0.1:53 (UDP and TCP) of the current network
// namespace; listen is called to make the sockets (so a test can make
// them in its namespace).
func Start(t testing.TB, listen func(fn func() error) error) *Server {
	t.Helper()
	s := &Server{addrs: map[string][]netip.Addr{}, cnames: map[string]string{}, ttl: 60,
		Addr: netip.MustParseAddrPort("127.0.0.1:53")}
	if err := listen(func() error {
		var err error
		if s.udp, err = net.ListenPacket("udp4", s.Addr.String()); err != nil {
			return err
		}
		s.tcp, err = net.Listen("tcp4", s.Addr.String())
		return err
	}); err != nil {
		t.Fatalf("test DNS server: %v", err)
	}
	t.Cleanup(func() { s.udp.Close(); s.tcp.Close() })
	go s.serveUDP()
	go s.serveTCP()
	return s
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// Set makes name resolve to addrs (replacing what it had).
func (s *Server) Set(name string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	s.addrs[fqdn(name)] = as
}

// CNAME makes name an alias of target.
func (s *Server) CNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cnames[fqdn(name)] = fqdn(target)
}

// QueryCount is how many queries the server answered so far.
func (s *Server) QueryCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Queries
}

// SetTTL sets the TTL of every record served from now on.
func (s *Server) SetTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = ttl
}

func (s *Server) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Queries++
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(qs[0])
	b.StartAnswers()
	name := strings.ToLower(qs[0].Name.String())
	for i := 0; i < 8; i++ {
		target, ok := s.cnames[name]
		if !ok {
			break
		}
		b.CNAMEResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: s.ttl},
			dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target)})
		name = target
	}
	for _, a := range s.addrs[name] {
		rh := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: s.ttl}
		switch {
		case a.Is4() && qs[0].Type == dnsmessage.TypeA:
			b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && qs[0].Type == dnsmessage.TypeAAAA:
			b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func (s *Server) serveUDP() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := s.answer(buf[:n]); out != nil {
			s.udp.WriteTo(out, from)
		}
	}
}

func (s *Server) serveTCP() {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				out := s.answer(q)
				if out == nil {
					return
				}
				msg := binary.BigEndian.AppendUint16(nil, uint16(len(out)))
				if _, err := c.Write(append(msg, out...)); err != nil {
					return
				}
			}
		}()
	}
}

// Query is a recursive query for the A records of name, with id.
func Query(name string, id uint16) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(fqdn(name)), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		panic(err)
	}
	return q
}

// Exchange asks the server on 127.0.0.1:53 n questions, one at a time,
// the i-th for the A records of name(i), each answer read before the
// next question (2 s at most each). It makes its socket in the calling
// thread's network namespace: call it from inside the test's.
func Exchange(n int, name func(i int) string) error {
	c, err := net.Dial("udp4", "127.0.0.1:53")
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for i := 0; i < n; i++ {
		if _, err := c.Write(Query(name(i), uint16(i))); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
	return nil
}
