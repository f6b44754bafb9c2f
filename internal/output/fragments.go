package output

import (
	"math/bits"
	"net/netip"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// A socket's records repeat their middle (cookie to actual_dport), and under
// churn the records of one thread repeat their owner and task (pid to
// uid). fragments formats each once and copies it after, from two small
// direct-mapped caches: a hit is one comparison and one copy, a miss
// formats as it would have anyway. The text of a slot is exactly
// determined by its key (comm names are interned by the decoder, an
// identity and a DNS origin are not changed once handed out), so a
// collision costs a reformat, never a wrong record. Slots keep their
// text's memory: once warm, no record allocates.
type fragments struct {
	heads [headSlots]headSlot
	tasks [taskSlots]taskSlot
}

const (
	headSlots = 1024 // sockets in flight at once under the bench's churn: a few hundred
	taskSlots = 64   // threads and softirq contexts that make transitions
)

type headKey struct {
	cookie       uint64
	netns        uint32
	family       uint16
	sport, dport uint16
	src, dst     netip.Addr
	dns          *dnscache.Origin
	actual       netip.AddrPort
}

type headSlot struct {
	key  headKey
	text []byte // ,"cookie":...,"dns_name":...; nil: empty slot
}

type taskKey struct {
	ownerKnown bool
	opid, otid uint32
	ocomm      string
	oid        *identity.Identity
	tpid, ttid uint32
	tcomm      string
	uid        uint32
}

type taskSlot struct {
	key  taskKey
	text []byte // ,"pid":...,"uid":N; nil: empty slot
}

// head appends the fields of t's socket from the cookie to actual_dport.
func (f *fragments) head(b []byte, t *record.Transition) []byte {
	k := headKey{cookie: t.Cookie, netns: t.Netns, family: t.Family, sport: t.SPort, dport: t.DPort,
		src: t.Src, dst: t.Dst, dns: t.DNS, actual: t.Actual}
	s := &f.heads[(t.Cookie^uint64(t.SPort)<<20^uint64(t.DPort)<<4)&(headSlots-1)]
	if s.text == nil || s.key != k {
		s.key, s.text = k, appendHead(s.text[:0], t)
	}
	return append(b, s.text...)
}

// appendHead formats what head caches.
func appendHead(b []byte, t *record.Transition) []byte {
	b = append(b, `,"cookie":`...)
	b = appendUint(b, t.Cookie)
	b = append(b, `,"netns":`...)
	b = appendUint(b, uint64(t.Netns))
	b = append(b, `,"family":"`...)
	b = append(b, familyName(t.Family)...)
	b = append(b, `","saddr":"`...)
	b = t.Src.AppendTo(b)
	b = append(b, `","sport":`...)
	b = appendUint(b, uint64(t.SPort))
	b = append(b, `,"daddr":"`...)
	b = t.Dst.AppendTo(b)
	b = append(b, `","dport":`...)
	b = appendUint(b, uint64(t.DPort))
	b = appendDNSName(b, t.DNS)
	return appendActual(b, t.Actual)
}

// task appends t's owner, the owner's identity, the task on the CPU and
// the uid: the fields from pid to uid.
func (f *fragments) task(b []byte, t *record.Transition) []byte {
	k := taskKey{ownerKnown: t.OwnerKnown, tpid: t.TaskPID, ttid: t.TaskTID, tcomm: t.TaskComm, uid: t.UID}
	if t.OwnerKnown {
		k.opid, k.otid, k.ocomm, k.oid = t.OwnerPID, t.OwnerTID, t.OwnerComm, t.OwnerID
	}
	s := &f.tasks[(t.TaskTID*7^t.OwnerTID)&(taskSlots-1)]
	if s.text == nil || s.key != k {
		s.key, s.text = k, appendTask(s.text[:0], t)
	}
	return append(b, s.text...)
}

// appendTask formats what task caches.
func appendTask(b []byte, t *record.Transition) []byte {
	if t.OwnerKnown {
		b = append(b, `,"pid":`...)
		b = appendUint(b, uint64(t.OwnerPID))
		b = append(b, `,"tid":`...)
		b = appendUint(b, uint64(t.OwnerTID))
		b = append(b, `,"comm":`...)
		b = AppendString(b, t.OwnerComm)
		b = appendIdentity(b, t.OwnerID)
	} else {
		b = append(b, `,"pid":null,"tid":null,"comm":null`...)
		b = appendIdentity(b, nil)
	}
	b = append(b, `,"task_pid":`...)
	b = appendUint(b, uint64(t.TaskPID))
	b = append(b, `,"task_tid":`...)
	b = appendUint(b, uint64(t.TaskTID))
	b = append(b, `,"task_comm":`...)
	b = AppendString(b, t.TaskComm)
	b = append(b, `,"uid":`...)
	return appendUint(b, uint64(t.UID))
}

// statePairs holds `,"old_state":"OLD","new_state":"NEW","old_state_duration_ns":`
// for every pair of valid states: one copy a record instead of five.
var statePairs = func() (p [tcpstate.Last + 1][tcpstate.Last + 1]string) {
	for o := tcpstate.First; o <= tcpstate.Last; o++ {
		for n := tcpstate.First; n <= tcpstate.Last; n++ {
			p[o][n] = `,"old_state":"` + o.String() + `","new_state":"` + n.String() + `","old_state_duration_ns":`
		}
	}
	return p
}()

// appendStates appends the old and new state and the key of the time in
// the old one.
func appendStates(b []byte, old, new tcpstate.State) []byte {
	if old.Valid() && new.Valid() {
		return append(b, statePairs[old][new]...)
	}
	b = append(b, `,"old_state":"`...)
	b = append(b, old.String()...)
	b = append(b, `","new_state":"`...)
	b = append(b, new.String()...)
	return append(b, `","old_state_duration_ns":`...)
}

// pow10 holds 10^i.
var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// digitPairs holds "00" to "99".
const digitPairs = "" +
	"0001020304050607080910111213141516171819" +
	"2021222324252627282930313233343536373839" +
	"4041424344454647484950515253545556575859" +
	"6061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// appendUint appends v in decimal, as strconv.AppendUint does, writing
// the digits in place (strconv formats into a buffer of its own and
// copies it, which at the rate of records is a tenth of the output's
// cost).
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	// Digits: floor(log10 v) + 1, from the bit length (Bit Twiddling
	// Hacks, "integer log base 10").
	t := uint(bits.Len64(v)) * 1233 >> 12
	if v >= pow10[t] {
		t++
	}
	n := len(b)
	b = append(b, "00000000000000000000"[:t]...)
	d := b[n:]
	i := len(d)
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		d[i], d[i+1] = digitPairs[r], digitPairs[r+1]
		v = q
	}
	if v >= 10 {
		d[0], d[1] = digitPairs[v*2], digitPairs[v*2+1]
	} else {
		d[0] = byte('0' + v)
	}
	return b
}

// appendInt is appendUint for a signed value.
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendUint(append(b, '-'), uint64(-v))
	}
	return appendUint(b, uint64(v))
}
