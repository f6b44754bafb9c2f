// Package output writes transitions for people (an aligned table) and for
// programs (newline-delimited JSON, one object per line).
package output

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/names"
	"github.com/socktrace/socktrace/internal/record"
	"github.com/socktrace/socktrace/internal/safetext"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// Writer writes records to an underlying stream. Callers flush it when
// they are about to wait for more input.
type Writer interface {
	Transition(t *record.Transition) error
	// Lost reports n transitions lost at time at, total since start.
	Lost(n, total uint64, at time.Time) error
	Skipped(n, total uint64, at time.Time) error
	Flush() error
}

// Formats are the values of --output.
var Formats = []string{"table", "json"}

// flusher is the part of bufio.Writer the writers need.
type flusher interface {
	io.Writer
	Flush() error
}

// JSON writes one JSON object per line.
type JSON struct {
	w   flusher
	buf []byte
	// netnsName names network namespaces (package netnsname); nil: not
	// known (a replay on another host).
	netnsName func(uint32) string
	clock     timeCache
	// transitionClock: the time of transition records, with the text
	// before and after it.
	transitionClock timeCache
	frags           *fragments // made by the first record that needs it
	// bw: w when it is a bufio.Writer; records are then formatted in its
	// buffer.
	bw *bufio.Writer
}

// SetNetnsNames gives the writer a way to name network namespaces
// (netns_name in socket rows, destinations and alerts).
func (j *JSON) SetNetnsNames(f func(uint32) string) { j.netnsName = f }

// ResolveNames looks up the host names of addrs (with -r) and waits for
// them, two seconds at most: a listing shows names, where the stream
// never waits for them.
func (t *Table) ResolveNames(addrs []netip.Addr) {
	if t.hosts != nil {
		t.hosts.Resolve(addrs, 2*time.Second)
	}
}

// SetNetnsNames gives the writer a way to name network namespaces (after
// the destination in alerts and failures).
func (t *Table) SetNetnsNames(f func(uint32) string) { t.netnsName = f }

// netnsNameOf is f(ino), or "" without f.
func netnsNameOf(f func(uint32) string, ino uint32) string {
	if f == nil {
		return ""
	}
	return f(ino)
}

// NewJSON returns a JSON writer on w.
func NewJSON(w flusher) *JSON {
	j := &JSON{w: w, buf: make([]byte, 0, 1024),
		transitionClock: timeCache{lead: `{"type":"transition","time":"`, after: `","ktime_ns":`}}
	j.bw, _ = w.(*bufio.Writer)
	return j
}

// Flush flushes the underlying writer.
func (j *JSON) Flush() error { return j.w.Flush() }

// TimeLayout is RFC 3339 with nanoseconds, always nine digits.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Transition writes a {"type":"transition",...} record.
func (j *JSON) Transition(t *record.Transition) error {
	b, direct := j.begin()
	b = j.transitionClock.append(b, t.Time) // {"type":"transition","time":"...","ktime_ns":
	b = appendUint(b, t.Ktime)
	b = j.fragments().head(b, t)
	b = appendStates(b, t.Old, t.New)
	if t.InOldKnown {
		b = appendInt(b, int64(t.InOld))
	} else {
		b = append(b, "null"...)
	}
	b = j.fragments().task(b, t)
	if t.SkErr != 0 {
		b = append(b, `,"error":`...)
		b = AppendString(b, errnoName(t.SkErr))
	} else {
		b = append(b, `,"error":null`...)
	}
	b = appendWire(b, t)
	b = append(b, "}\n"...)
	return j.end(b, direct)
}

// recordRoom is the room begin asks of the output buffer: more than any
// transition record takes, but for ones with long names, which still
// work (append grows the slice).
const recordRoom = 4096

// begin returns the slice to append a record to: the free space of the
// output buffer when the writer is a bufio.Writer with room (the record
// is then written where it is formatted), else the writer's own.
func (j *JSON) begin() (b []byte, direct bool) {
	if j.bw != nil {
		if j.bw.Available() < recordRoom {
			j.bw.Flush() // an error sticks: Write in end returns it
		}
		if j.bw.Available() >= recordRoom {
			return j.bw.AvailableBuffer(), true
		}
	}
	return j.buf[:0], false
}

// fragments returns the writer's caches of record parts, made on first
// use: a writer of socket listings never needs them.
func (j *JSON) fragments() *fragments {
	if j.frags == nil {
		j.frags = &fragments{}
	}
	return j.frags
}

// end writes the record begin began (direct: in the output buffer).
func (j *JSON) end(b []byte, direct bool) error {
	if !direct {
		j.buf = b
	}
	_, err := j.w.Write(b)
	return err
}

// Lost writes a {"type":"lost",...} record.
func (j *JSON) Lost(n, total uint64, at time.Time) error {
	return j.loss(`{"type":"lost"`, n, total, at)
}

// Skipped writes a {"type":"skipped",...} record.
func (j *JSON) Skipped(n, total uint64, at time.Time) error {
	return j.loss(`{"type":"skipped"`, n, total, at)
}

// loss writes a count of records dropped; open is the record's start.
func (j *JSON) loss(open string, n, total uint64, at time.Time) error {
	b := append(j.buf[:0], open...)
	b = append(b, `,"time":"`...)
	b = at.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","count":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"total":`...)
	b = strconv.AppendUint(b, total, 10)
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// appendSocketHead adds the fields every record of a socket begins with,
// from the time to the peer's port.
func (j *JSON) appendSocketHead(b []byte, t *record.Transition) []byte {
	b = append(b, `,"time":"`...)
	b = j.clock.append(b, t.Time)
	b = append(b, `","ktime_ns":`...)
	b = appendUint(b, t.Ktime)
	return j.fragments().head(b, t)
}

// appendDNSName adds "dns_name": the name the remote address came from,
// null when no DNS answer seen holds it.
func appendDNSName(b []byte, o *dnscache.Origin) []byte {
	b = append(b, `,"dns_name":`...)
	if o == nil {
		return append(b, "null"...)
	}
	return AppendString(b, o.Name)
}

// appendActual adds "actual_daddr" and "actual_dport": the backend this
// host's NAT sent the connection to, null when nothing translated it.
func appendActual(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return append(b, `,"actual_daddr":null,"actual_dport":null`...)
	}
	b = append(b, `,"actual_daddr":"`...)
	b = a.Addr().AppendTo(b)
	b = append(b, `","actual_dport":`...)
	return appendUint(b, uint64(a.Port()))
}

// appendWire adds what happened on the wire where it explains the
// transition: SYN retransmits at the end of a connect attempt, the RTT
// once connected, and the socket's totals when it closes.
func appendWire(b []byte, t *record.Transition) []byte {
	if t.Old == tcpstate.SynSent && (t.New == tcpstate.Close || t.New == tcpstate.Established) {
		b = append(b, `,"syn_retransmits":`...)
		b = strconv.AppendUint(b, uint64(t.SynRetrans), 10)
	}
	if t.Old == tcpstate.SynSent && t.New == tcpstate.Established {
		b = append(b, `,"srtt_us":`...)
		b = appendStat(b, t.TCPStats, uint64(t.SRTT/time.Microsecond))
	}
	if t.New != tcpstate.Close {
		return b
	}
	for _, f := range [...]struct {
		name string
		v    uint64
	}{
		{`,"bytes_acked":`, t.BytesAcked}, {`,"bytes_received":`, t.BytesReceived},
		{`,"segs_out":`, uint64(t.SegsOut)}, {`,"segs_in":`, uint64(t.SegsIn)},
		{`,"total_retrans":`, uint64(t.TotalRetrans)}, {`,"srtt_us":`, uint64(t.SRTT / time.Microsecond)},
	} {
		b = append(b, f.name...)
		b = appendStat(b, t.TCPStats, f.v)
	}
	b = append(b, `,"rst_received":`...)
	b = strconv.AppendBool(b, t.RstReceived)
	b = append(b, `,"rst_sent":`...)
	b = strconv.AppendBool(b, t.RstSent)
	b = append(b, `,"lifetime_ns":`...)
	if t.LifetimeKnown {
		b = strconv.AppendInt(b, int64(t.Lifetime), 10)
	} else {
		b = append(b, "null"...)
	}
	return appendDrops(b, t)
}

// appendDrops adds the socket's packets dropped on this host: "drops",
// "drop_reason" (the kernel's reason, e.g. NETFILTER_DROP, or on kernels
// before 5.17 the function that freed the packet) and "drop_direction"
// (sent or received), the last two null without drops.
func appendDrops(b []byte, t *record.Transition) []byte {
	b = append(b, `,"drops":`...)
	b = strconv.AppendUint(b, uint64(t.Drops), 10)
	if t.Drops == 0 {
		return append(b, `,"drop_reason":null,"drop_direction":null`...)
	}
	b = append(b, `,"drop_reason":`...)
	if t.DropReasonName != "" {
		b = AppendString(b, t.DropReasonName)
	} else {
		b = append(b, "null"...) // the kernel's names could not be read
	}
	b = append(b, `,"drop_direction":`...)
	if d := t.DropDir.String(); d != "" {
		return AppendString(b, d)
	}
	return append(b, "null"...)
}

func appendStat(b []byte, known bool, v uint64) []byte {
	if !known {
		return append(b, "null"...)
	}
	return strconv.AppendUint(b, v, 10)
}

// Packet writes a retransmit, reset or error record of a socket:
// {"type":"retransmit",...}, {"type":"reset","direction":"sent"|"received",...},
// {"type":"error",...}.
func (j *JSON) Packet(t *record.Packet) error {
	b := j.buf[:0]
	switch t.Kind {
	case events.KindRetransmit:
		b = append(b, `{"type":"retransmit"`...)
	case events.KindResetSent:
		b = append(b, `{"type":"reset","direction":"sent"`...)
	case events.KindResetReceived:
		b = append(b, `{"type":"reset","direction":"received"`...)
	case events.KindDrop:
		b = append(b, `{"type":"drop"`...)
	default:
		b = append(b, `{"type":"error"`...)
	}
	b = j.appendSocketHead(b, (*record.Transition)(t))
	b = append(b, `,"state":"`...)
	b = append(b, t.State().String()...)
	b = append(b, '"')
	if t.OwnerKnown {
		b = append(b, `,"pid":`...)
		b = strconv.AppendUint(b, uint64(t.OwnerPID), 10)
		b = append(b, `,"comm":`...)
		b = AppendString(b, t.OwnerComm)
	} else {
		b = append(b, `,"pid":null,"comm":null`...)
	}
	b = appendIdentity(b, t.OwnerID)
	b = append(b, `,"error":`...)
	if t.SkErr != 0 {
		b = AppendString(b, errnoName(t.SkErr))
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"syn_retransmits":`...)
	b = strconv.AppendUint(b, uint64(t.SynRetrans), 10)
	b = append(b, `,"retransmits":`...)
	b = strconv.AppendUint(b, uint64(t.Retrans), 10)
	b = append(b, `,"total_retrans":`...)
	b = appendStat(b, t.TCPStats, uint64(t.TotalRetrans))
	b = append(b, `,"srtt_us":`...)
	b = appendStat(b, t.TCPStats, uint64(t.SRTT/time.Microsecond))
	b = appendDrops(b, (*record.Transition)(t))
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// LostOther writes a {"type":"lost","records":"events",...} record:
// retransmit, reset or error records dropped (not transitions).
func (j *JSON) LostOther(n, total uint64, at time.Time) error {
	return j.loss(`{"type":"lost","records":"events"`, n, total, at)
}

func familyName(f uint16) string {
	if f == unix.AF_INET6 {
		return "inet6"
	}
	return "inet"
}

func errnoName(e uint16) string {
	if n := unix.ErrnoName(unix.Errno(e)); n != "" {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}

const hex = "0123456789abcdef"

// jsonPlain: the bytes a JSON string holds as they are (printable
// ASCII but the quote and the backslash).
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		// The run of bytes that need no escape, copied at once.
		j := i
		for j < len(s) && jsonPlain[s[j]] {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\r':
				b = append(b, '\\', 'r')
			default: // other controls and DEL
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Table writes aligned columns for people, with a header line.
type Table struct {
	w          flusher
	errw       io.Writer // where loss notices go
	services   names.Services
	hosts      *names.Hosts
	header     bool // transition header written
	sockHeader bool // socket header written
	info       bool // -i
	buf        []byte
	netnsName  func(uint32) string
}

// TableOptions choose how the table shows ports and addresses.
type TableOptions struct {
	Numeric bool // -n: port numbers, not service names
	Resolve bool // -r: host names, looked up in the background
	Info    bool // -i: TCP details (bytes, retransmits, RTT) on every close
}

// NewTable returns a table writer on w; notices of loss go to errw.
func NewTable(w flusher, errw io.Writer, o TableOptions) *Table {
	t := &Table{w: w, errw: errw, buf: make([]byte, 0, 256), info: o.Info}
	if !o.Numeric {
		t.services = names.LoadServices()
	}
	if o.Resolve {
		t.hosts = names.NewHosts(nil)
	}
	return t
}

// Flush flushes the underlying writer.
func (t *Table) Flush() error { return t.w.Flush() }

const tableHeader = "TIME            COOKIE     PID     COMM            LOCAL                        PEER                         TRANSITION                    MS        ERROR\n"

// Transition writes one line.
func (t *Table) Transition(tr *record.Transition) error {
	b := t.line(tr, tr.Old.String()+" -> "+tr.New.String())
	_, err := t.w.Write(b)
	return err
}

// line formats a line with what in the TRANSITION column.
func (t *Table) line(tr *record.Transition, what string) []byte {
	b := t.buf[:0]
	if !t.header {
		b = append(b, tableHeader...)
		t.header = true
	}
	b = tr.Time.Local().AppendFormat(b, "15:04:05.000000")
	b = append(b, ' ')
	b = appendCol(b, strconv.FormatUint(tr.Cookie, 10), 11)
	if tr.OwnerKnown {
		b = appendCol(b, strconv.FormatUint(uint64(tr.OwnerPID), 10), 8)
		b = appendCol(b, safetext.Escape(tr.OwnerComm), 16)
	} else {
		b = appendCol(b, "-", 8)
		b = appendCol(b, "-", 16)
	}
	b = appendCol(b, t.endpoint(tr.Src, tr.SPort), 29)
	b = appendCol(b, t.peerNAT(tr.Dst, tr.DPort, tr.DNS, tr.Actual), 29)
	b = appendCol(b, what, 30)
	if tr.InOldKnown {
		b = appendCol(b, strconv.FormatFloat(float64(tr.InOld)/float64(time.Millisecond), 'f', 3, 64), 10)
	} else {
		b = appendCol(b, "-", 10)
	}
	if tr.SkErr != 0 {
		b = append(b, errnoName(tr.SkErr)...)
		b = append(b, ' ')
	}
	b = append(b, Detail(tr, t.info)...)
	// Who the owner is, at the end of the line as ss -p puts users:
	// pod:NAMESPACE/POD/CONTAINER, unit:NAME or container:RUNTIME/ID.
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	if w := tr.OwnerID.Label(); w != "" && tr.OwnerKnown {
		b = append(b, ' ')
		b = safetext.Append(b, w)
	}
	b = append(b, '\n')
	t.buf = b
	return b
}

// Packet writes a retransmit, reset or error of a socket as a line.
func (t *Table) Packet(tr *record.Packet) error {
	x := record.Transition(*tr)
	what := tr.Kind.String() + " in " + tr.State().String()
	if tr.Kind == events.KindDrop && tr.Drops > 0 {
		// The packet just dropped is the socket's last.
		what += " (" + safetext.Escape(tr.DropReasonName) + ", " + tr.DropDir.String() + ")"
	}
	x.InOldKnown = false
	b := t.line(&x, what)
	_, err := t.w.Write(b)
	return err
}

// LostOther tells the user on errw.
func (t *Table) LostOther(n, total uint64, at time.Time) error {
	_, err := fmt.Fprintf(t.errw, "socktrace: %s: lost %d retransmit/reset/error records, ring buffer full (%d so far)\n",
		at.Local().Format("15:04:05.000000"), n, total)
	return err
}

// Lost tells the user on errw; the table itself stays clean.
func (t *Table) Lost(n, total uint64, at time.Time) error {
	_, err := fmt.Fprintf(t.errw, "socktrace: %s: lost %d transitions, ring buffer full (%d lost so far): enlarge it with --ring-size or narrow the filter\n",
		at.Local().Format("15:04:05.000000"), n, total)
	return err
}

// Skipped tells the user on errw.
func (t *Table) Skipped(n, total uint64, at time.Time) error {
	_, err := fmt.Fprintf(t.errw, "socktrace: %s: the kernel skipped %d state changes (%d so far), of any socket: its BPF program was already running on that CPU when a softirq made another\n",
		at.Local().Format("15:04:05.000000"), n, total)
	return err
}

// endpoint formats an address and port the way ss does: 10.0.0.1:443,
// [fd00::1]:https, with * for port 0.
func (t *Table) endpoint(a netip.Addr, port uint16) string {
	host := a.String()
	if t.hosts != nil && !a.IsUnspecified() {
		host = safetext.Escape(t.hosts.Name(a)) // a PTR record says what it likes
	}
	if a.Is6() && host == a.String() {
		host = "[" + host + "]"
	}
	return host + ":" + t.port(port)
}

// port is a port by service name (unless -n), * for 0.
func (t *Table) port(port uint16) string {
	switch {
	case port == 0:
		return "*"
	case t.services != nil:
		return t.services.Port(port)
	}
	return strconv.Itoa(int(port))
}

// peer formats a remote endpoint: name(10.4.1.80):9092 when the address
// came from a DNS answer (the name it answered wins over -r's PTR
// lookup), else as endpoint does.
func (t *Table) peer(a netip.Addr, port uint16, o *dnscache.Origin) string {
	if o == nil {
		return t.endpoint(a, port)
	}
	return safetext.Escape(o.Name) + "(" + a.String() + "):" + t.port(port)
}

// peerNAT is peer, followed by the backend NAT sent the connection to,
// if any: 10.96.0.10:9092->10.4.1.81:9092.
func (t *Table) peerNAT(a netip.Addr, port uint16, o *dnscache.Origin, actual netip.AddrPort) string {
	s := t.peer(a, port, o)
	if actual.IsValid() {
		s += "->" + t.endpoint(actual.Addr(), actual.Port())
	}
	return s
}

// appendCol appends s and pads it to width, always leaving one space.
func appendCol(b []byte, s string, width int) []byte {
	b = append(b, s...)
	n := utf8.RuneCountInString(s)
	for i := n; i < width-1; i++ {
		b = append(b, ' ')
	}
	return append(b, ' ')
}
