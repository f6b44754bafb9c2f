// Package dnslookup asks a DNS server a question from inside a network
// namespace, as a process living there would: socktrace's own check of
// where a name points now, when a process keeps failing to reach the
// address it got for it. It sends the query and reads the answer; what
// the answer says reaches socktrace the way every other answer does,
// through passive DNS, so that it is recorded and replayed alike.
package dnslookup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/netns"
)

// Options of a Client.
//
// A name is asked again (in one namespace, for one family) once the
// answer to the last lookup of it is older than its TTL: a resolver
// would not give anything newer before, and may after. The TTL counts
// as MinEvery at least and Every at most. After a lookup that got no
// answer the name waits FailedEvery, twice that after two in a row, and
// so on up to Every: a server that does not answer is not pressed, one
// that missed an answer once is asked again soon.
type Options struct {
	Root        string        // the host's / ("" or "/": ours), for /proc
	MinEvery    time.Duration // lookups of a name at least this far apart (DefaultMinEvery if 0)
	Every       time.Duration // a name may be asked again this long after, whatever its TTL (DefaultEvery if 0)
	FailedEvery time.Duration // after a lookup without an answer, doubling with each in a row (DefaultFailedEvery if 0)
	PerSecond   int           // lookups of all names, per second at most (DefaultPerSecond if 0)
	Timeout     time.Duration // for an answer (DefaultTimeout if 0)
}

// Defaults of Options.
const (
	DefaultMinEvery    = time.Second
	DefaultEvery       = 30 * time.Second
	DefaultFailedEvery = time.Second
	DefaultPerSecond   = 16
	DefaultTimeout     = 2 * time.Second
	// maxInFlight bounds the lookups under way; more are dropped (and
	// counted): they are a hint, not a duty.
	maxInFlight = 4
	// maxKeys bounds the rate limiter's memory.
	maxKeys = 4096
)

// Client makes rate-limited lookups in the background. Safe for
// concurrent use.
type Client struct {
	opt      Options
	now      func() time.Time // time.Now; tests set it
	mu       sync.Mutex
	next     map[key]time.Time // when a name may be asked again
	fails    map[key]uint8     // lookups in a row of a name that got no answer
	tokens   float64           // of the PerSecond budget
	refilled time.Time
	inflight int
	stats    Stats
}

// Stats count the lookups.
type Stats struct {
	Sent, Failed, Limited uint64
}

type key struct {
	name  string
	v6    bool
	netns uint32
}

// New returns a Client.
func New(o Options) *Client {
	if o.MinEvery <= 0 {
		o.MinEvery = DefaultMinEvery
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.Every < o.MinEvery {
		o.Every = o.MinEvery
	}
	if o.FailedEvery <= 0 {
		o.FailedEvery = min(DefaultFailedEvery, o.Every)
	}
	if o.PerSecond <= 0 {
		o.PerSecond = DefaultPerSecond
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Root == "/" {
		o.Root = ""
	}
	return &Client{opt: o, now: time.Now, next: map[key]time.Time{}, fails: map[key]uint8{}, tokens: float64(o.PerSecond)}
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Ask looks name up (A, or AAAA if v6) at server, from the network
// namespace netns that process pid (thread tid, 0: its main thread)
// lives in, unless the answer to the last lookup of it there is still
// within its TTL (see Options), or the lookups of all names used their
// budget, or too many are under way. It returns at once; done (if not
// nil) is called with the outcome.
func (c *Client) Ask(name string, v6 bool, server netip.AddrPort, netns, pid, tid uint32, done func(error)) bool {
	k := key{name, v6, netns}
	c.mu.Lock()
	now := c.now()
	c.refill(now)
	if t, ok := c.next[k]; (ok && now.Before(t)) || c.inflight >= maxInFlight || c.tokens < 1 {
		c.stats.Limited++
		c.mu.Unlock()
		return false
	}
	if len(c.next) >= maxKeys {
		clear(c.next)
		clear(c.fails)
	}
	c.next[k] = now.Add(c.opt.Every) // until the answer says
	c.tokens--
	c.inflight++
	c.stats.Sent++
	c.mu.Unlock()
	go func() {
		ttl, err := c.lookup(name, v6, server, netns, pid, tid)
		wait := min(max(ttl, c.opt.MinEvery), c.opt.Every)
		c.mu.Lock()
		c.inflight--
		if err != nil {
			c.stats.Failed++
			n := c.fails[k]
			wait = min(c.opt.FailedEvery<<n, c.opt.Every)
			if n < 16 {
				c.fails[k] = n + 1
			}
		} else {
			delete(c.fails, k)
		}
		if t, ok := c.next[k]; ok && t.Equal(now.Add(c.opt.Every)) {
			c.next[k] = now.Add(wait)
		}
		c.mu.Unlock()
		if done != nil {
			done(err)
		}
	}()
	return true
}

// refill adds to the PerSecond budget the lookups due since the last
// refill; c.mu held.
func (c *Client) refill(now time.Time) {
	if d := now.Sub(c.refilled); d > 0 {
		c.tokens = min(c.tokens+d.Seconds()*float64(c.opt.PerSecond), float64(c.opt.PerSecond))
	}
	c.refilled = now
}

// lookup asks and waits for the answer; it returns the answer's TTL
// (its records' least; 0 if it has none).
func (c *Client) lookup(name string, v6 bool, server netip.AddrPort, netns, pid, tid uint32) (time.Duration, error) {
	fd, err := c.socket(server, netns, pid, tid)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var sa unix.Sockaddr
	if server.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(server.Port()), Addr: server.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(server.Port()), Addr: server.Addr().As16()}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, fmt.Errorf("look up %s: connect %v: %w", name, server, err)
	}
	q, id, err := query(name, v6)
	if err != nil {
		return 0, err
	}
	if _, err := unix.Write(fd, q); err != nil {
		return 0, fmt.Errorf("look up %s: send to %v: %w", name, server, err)
	}
	tv := unix.NsecToTimeval(c.opt.Timeout.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(c.opt.Timeout)
	for time.Now().Before(deadline) {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return 0, fmt.Errorf("look up %s at %v: %w", name, server, err)
		}
		var p dnsmessage.Parser
		if h, err := p.Start(buf[:n]); err == nil && h.ID == id && h.Response {
			return answerTTL(&p), nil
		}
	}
	return 0, fmt.Errorf("look up %s at %v: no answer", name, server)
}

// answerTTL is the least TTL of the answer's records (0 if none).
func answerTTL(p *dnsmessage.Parser) time.Duration {
	if err := p.SkipAllQuestions(); err != nil {
		return 0
	}
	ttl, seen := uint32(0), false
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			break
		}
		if !seen || h.TTL < ttl {
			ttl, seen = h.TTL, true
		}
		if err := p.SkipAnswer(); err != nil {
			break
		}
	}
	return time.Duration(ttl) * time.Second
}

// socket makes a UDP socket in the namespace of the asker: a thread
// enters it, makes the socket and comes back (the socket stays there).
func (c *Client) socket(server netip.AddrPort, ino, pid, tid uint32) (int, error) {
	base := c.opt.Root + "/proc/" + strconv.FormatUint(uint64(pid), 10)
	var paths []string
	if tid != 0 {
		paths = append(paths, base+"/task/"+strconv.FormatUint(uint64(tid), 10)+"/ns/net")
	}
	paths = append(paths, base+"/ns/net")
	nsfd := -1
	for _, p := range paths {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && (ino == 0 || uint32(st.Ino) == ino) {
			nsfd = fd
			break
		}
		unix.Close(fd)
	}
	if nsfd < 0 {
		return -1, fmt.Errorf("network namespace %d of process %d: gone", ino, pid)
	}
	defer unix.Close(nsfd)
	family := unix.AF_INET
	if server.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, serr := -1, error(nil)
	err := netns.Do(nsfd, strconv.FormatUint(uint64(ino), 10), func() {
		fd, serr = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	})
	if err != nil {
		return -1, err
	}
	return fd, serr
}

var errName = errors.New("bad name")

// query builds a recursive query for name.
func query(name string, v6 bool) ([]byte, uint16, error) {
	n, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, 0, fmt.Errorf("look up %q: %w", name, errName)
	}
	t := dnsmessage.TypeA
	if v6 {
		t = dnsmessage.TypeAAAA
	}
	id := uint16(rand.Uint32())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: n, Type: t, Class: dnsmessage.ClassINET})
	m, err := b.Finish()
	return m, id, err
}
