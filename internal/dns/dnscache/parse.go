// Package dnscache keeps what the DNS answers seen on the host say:
// which names resolved to which addresses, when, for whom, with what
// TTL; it names the destination of a connect from it and tells when
// that name has since moved (stale DNS). It parses answers with
// golang.org/x/net/dns/dnsmessage, the parser the Go standard library
// uses itself, and stays within fixed bounds whatever it is fed.
package dnscache

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Observation is one DNS answer as socktrace saw it: the message, where
// it came from and who asked. It is what a capture records.
type Observation struct {
	At     time.Time // when the answer arrived
	K      uint64    // the same, CLOCK_MONOTONIC
	Netns  uint32    // of the process that asked; 0 unknown
	PID    uint32    // that process; 0 unknown
	Comm   string
	Cgroup uint64 // its cgroup v2 id (or the receiving socket's); 0 unknown
	Server netip.AddrPort
	TCP    bool
	Self   bool   // socktrace's own lookup (see Cache.Stale)
	Msg    []byte // the DNS message, perhaps cut short
}

// Answer is what one DNS message says.
type Answer struct {
	Name  string // the name asked for, lower case, no final dot
	Type  dnsmessage.Type
	Chain []string     // the CNAMEs followed from Name, in order
	Addrs []netip.Addr // of the last name of the chain
	TTL   uint32       // the smallest TTL along the way (seconds)
	RCode dnsmessage.RCode
	Cut   bool // the message ended early: what came before is kept
}

// maxChain bounds the CNAMEs followed, as resolvers do.
const maxChain = 16

// maxAddrs bounds the addresses kept of one answer.
const maxAddrs = 64

var errNotAnswer = errors.New("not an answer to one A or AAAA question")

func canon(n dnsmessage.Name) string {
	return strings.TrimSuffix(strings.ToLower(n.String()), ".")
}

// Parse reads an answer to an A or AAAA question. Records after a cut
// are lost; those before are kept (Cut says so).
func Parse(msg []byte) (Answer, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return Answer{}, err
	}
	if !h.Response {
		return Answer{}, errNotAnswer
	}
	q, err := p.Question()
	if err != nil {
		return Answer{}, err
	}
	if q.Type != dnsmessage.TypeA && q.Type != dnsmessage.TypeAAAA {
		return Answer{}, errNotAnswer
	}
	a := Answer{Name: canon(q.Name), Type: q.Type, RCode: h.RCode}
	if err := p.SkipAllQuestions(); err != nil {
		a.Cut = true
		return a, nil
	}
	// Answers come in any order: gather them, then follow the chain.
	cnames := map[string]string{}
	type rr struct {
		name string
		addr netip.Addr
		ttl  uint32
	}
	var addrs []rr
	ttls := map[string]uint32{}
	for {
		rh, err := p.AnswerHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil {
			a.Cut = true
			break
		}
		name := canon(rh.Name)
		switch rh.Type {
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				a.Cut = true
				break
			}
			if len(cnames) < maxChain*4 {
				cnames[name] = canon(r.CNAME)
				ttls[name] = rh.TTL
			}
			continue
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				a.Cut = true
				break
			}
			if len(addrs) < maxAddrs*4 {
				addrs = append(addrs, rr{name, netip.AddrFrom4(r.A), rh.TTL})
			}
			continue
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				a.Cut = true
				break
			}
			if len(addrs) < maxAddrs*4 {
				addrs = append(addrs, rr{name, netip.AddrFrom16(r.AAAA), rh.TTL})
			}
			continue
		default:
			if err := p.SkipAnswer(); err != nil {
				a.Cut = true
				break
			}
			continue
		}
		break // a record that did not parse: the rest is lost
	}
	end := a.Name
	ttl, ttlSet := uint32(0), false
	minTTL := func(t uint32) {
		if !ttlSet || t < ttl {
			ttl, ttlSet = t, true
		}
	}
	for i := 0; i < maxChain; i++ {
		next, ok := cnames[end]
		if !ok {
			break
		}
		minTTL(ttls[end])
		a.Chain = append(a.Chain, next)
		end = next
	}
	for _, r := range addrs {
		if r.name == end && len(a.Addrs) < maxAddrs {
			a.Addrs = append(a.Addrs, r.addr.Unmap())
			minTTL(r.ttl)
		}
	}
	a.TTL = ttl
	return a, nil
}
