package output

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/socktrace/socktrace/internal/owner/procs"
	"github.com/socktrace/socktrace/internal/safetext"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
	"github.com/socktrace/socktrace/internal/timeline"
)

// Socket writes a {"type":"socket",...} record: a socket that exists,
// with the same field names as transitions where they overlap.
func (j *JSON) Socket(r *timeline.Row, at time.Time) error {
	b := j.buf[:0]
	b = append(b, `{"type":"socket","time":"`...)
	b = j.clock.append(b, at)
	b = append(b, `","cookie":`...)
	b = strconv.AppendUint(b, r.Cookie, 10)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(r.Netns), 10)
	b = appendKeyString(b, `,"netns_name":`, netnsNameOf(j.netnsName, r.Netns))
	b = append(b, `,"family":"`...)
	b = append(b, familyName(r.Family)...)
	b = append(b, `","saddr":"`...)
	b = r.Src.AppendTo(b)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(r.SPort), 10)
	b = append(b, `,"daddr":"`...)
	b = r.Dst.AppendTo(b)
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(r.DPort), 10)
	b = appendDNSName(b, r.DNS)
	b = appendActual(b, r.Actual)
	b = append(b, `,"state":"`...)
	b = append(b, r.State.String()...)
	b = append(b, '"')
	if r.OwnerKnown {
		b = append(b, `,"pid":`...)
		b = strconv.AppendUint(b, uint64(r.OwnerPID), 10)
		b = append(b, `,"comm":`...)
		b = AppendString(b, r.OwnerComm)
	} else {
		b = append(b, `,"pid":null,"comm":null`...)
	}
	b = appendIdentity(b, r.OwnerID)
	b = append(b, `,"users":[`...)
	for i, u := range r.Users {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"pid":`...)
		b = strconv.AppendUint(b, uint64(u.PID), 10)
		b = append(b, `,"comm":`...)
		b = AppendString(b, u.Comm)
		b = append(b, `,"fd":`...)
		b = strconv.AppendInt(b, int64(u.FD), 10)
		b = append(b, '}')
	}
	b = append(b, ']')
	d := r.Snap()
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(d.UID), 10)
	b = append(b, `,"inode":`...)
	b = strconv.AppendUint(b, uint64(d.Inode), 10)
	b = append(b, `,"recv_q":`...)
	b = strconv.AppendUint(b, uint64(d.RecvQ), 10)
	b = append(b, `,"send_q":`...)
	b = strconv.AppendUint(b, uint64(d.SendQ), 10)
	b = append(b, `,"timer":`...)
	if d.Timer != snapshot.TimerNone {
		b = AppendString(b, d.Timer.String())
		b = append(b, `,"timer_expires_ms":`...)
		b = strconv.AppendInt(b, d.Expires.Milliseconds(), 10)
	} else {
		b = append(b, `null,"timer_expires_ms":null`...)
	}
	b = append(b, `,"retrans":`...)
	b = strconv.AppendUint(b, uint64(d.Retrans), 10)
	b = append(b, `,"preexisting":`...)
	b = strconv.AppendBool(b, r.Preexisting)
	b = appendRowDrops(b, r)
	if i := d.Info; i != nil {
		b = append(b, `,"tcp_info":{"rtt_us":`...)
		for _, f := range [...]struct {
			name string
			v    uint64
		}{
			{"", uint64(i.Rtt)}, {`,"rttvar_us":`, uint64(i.Rttvar)}, {`,"rto_us":`, uint64(i.Rto)},
			{`,"snd_cwnd":`, uint64(i.Snd_cwnd)}, {`,"snd_mss":`, uint64(i.Snd_mss)}, {`,"rcv_mss":`, uint64(i.Rcv_mss)},
			{`,"unacked":`, uint64(i.Unacked)}, {`,"lost":`, uint64(i.Lost)}, {`,"retrans":`, uint64(i.Retrans)},
			{`,"total_retrans":`, uint64(i.Total_retrans)}, {`,"bytes_acked":`, i.Bytes_acked},
			{`,"bytes_received":`, i.Bytes_received}, {`,"segs_out":`, uint64(i.Segs_out)}, {`,"segs_in":`, uint64(i.Segs_in)},
			{`,"last_data_sent_ms":`, uint64(i.Last_data_sent)}, {`,"last_data_recv_ms":`, uint64(i.Last_data_recv)},
			{`,"last_ack_recv_ms":`, uint64(i.Last_ack_recv)}, {`,"min_rtt_us":`, uint64(i.Min_rtt)},
			{`,"delivery_rate":`, i.Delivery_rate},
		} {
			b = append(b, f.name...)
			b = strconv.AppendUint(b, f.v, 10)
		}
		b = append(b, '}')
	}
	if m := d.Mem; m != nil {
		b = fmt.Appendf(b, `,"skmem":{"rmem_alloc":%d,"rcvbuf":%d,"wmem_alloc":%d,"sndbuf":%d,"fwd_alloc":%d,"wmem_queued":%d,"optmem":%d,"backlog":%d,"drops":%d}`,
			m.RmemAlloc, m.RcvBuf, m.WmemAlloc, m.SndBuf, m.FwdAlloc, m.WmemQueued, m.OptMem, m.Backlog, m.Drops)
	}
	b = append(b, "}\n"...)
	j.buf = b
	_, err := j.w.Write(b)
	return err
}

// appendRowDrops adds a socket's packets dropped on this host as
// transitions' close records do: "drops", "drop_reason",
// "drop_direction".
func appendRowDrops(b []byte, r *timeline.Row) []byte {
	b = append(b, `,"drops":`...)
	b = strconv.AppendUint(b, uint64(r.Drops), 10)
	if r.Drops == 0 {
		return append(b, `,"drop_reason":null,"drop_direction":null`...)
	}
	b = append(b, `,"drop_reason":`...)
	if r.DropReason != "" {
		b = AppendString(b, r.DropReason)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"drop_direction":`...)
	return AppendString(b, r.DropDir.String())
}

// ssState is how ss's State column spells each state.
var ssState = map[tcpstate.State]string{
	tcpstate.Established: "ESTAB",
	tcpstate.SynSent:     "SYN-SENT",
	tcpstate.SynRecv:     "SYN-RECV",
	tcpstate.FinWait1:    "FIN-WAIT-1",
	tcpstate.FinWait2:    "FIN-WAIT-2",
	tcpstate.TimeWait:    "TIME-WAIT",
	tcpstate.Close:       "UNCONN",
	tcpstate.CloseWait:   "CLOSE-WAIT",
	tcpstate.LastAck:     "LAST-ACK",
	tcpstate.Listen:      "LISTEN",
	tcpstate.Closing:     "CLOSING",
	tcpstate.NewSynRecv:  "SYN-RECV",
}

const socketHeader = "State      Recv-Q Send-Q Local Address:Port           Peer Address:Port            Process\n"

// Socket writes one ss -tanpoe style line: state, queues, endpoints, then
// users:((...)), timer:(...), the cookie and namespace.
func (t *Table) Socket(r *timeline.Row, _ time.Time) error {
	b := t.buf[:0]
	if !t.sockHeader {
		b = append(b, socketHeader...)
		t.sockHeader = true
	}
	b = appendCol(b, ssState[r.State], 11)
	b = appendCol(b, strconv.FormatUint(uint64(r.Snap().RecvQ), 10), 7)
	b = appendCol(b, strconv.FormatUint(uint64(r.Snap().SendQ), 10), 7)
	b = appendCol(b, t.endpoint(r.Src, r.SPort), 30)
	b = appendCol(b, t.peerNAT(r.Dst, r.DPort, r.DNS, r.Actual), 30)
	var extra []string
	if len(r.Users) > 0 {
		extra = append(extra, procs.Users(r.Users))
	} else if r.OwnerKnown {
		extra = append(extra, procs.Users([]procs.Owner{{PID: r.OwnerPID, Comm: r.OwnerComm, FD: -1}}))
	}
	if r.Snap().Timer != snapshot.TimerNone {
		extra = append(extra, "timer:("+r.Snap().Timer.String()+","+FormatTimer(r.Snap().Expires)+","+strconv.Itoa(int(r.Snap().Retrans))+")")
	}
	if r.Snap().UID != 0 {
		extra = append(extra, "uid:"+strconv.FormatUint(uint64(r.Snap().UID), 10))
	}
	if r.Snap().Inode != 0 {
		extra = append(extra, "ino:"+strconv.FormatUint(uint64(r.Snap().Inode), 10))
	}
	extra = append(extra, "cookie:"+strconv.FormatUint(r.Cookie, 10))
	if r.Drops > 0 {
		// Packets socktrace saw dropped on this host (ss -m's d is
		// the receive queue's drops only).
		extra = append(extra, "dropped:("+strconv.FormatUint(uint64(r.Drops), 10)+","+safetext.Escape(r.DropReason)+","+r.DropDir.String()+")")
	}
	if m := r.Snap().Mem; m != nil {
		extra = append(extra, fmt.Sprintf("skmem:(r%d,rb%d,t%d,tb%d,f%d,w%d,o%d,bl%d,d%d)",
			m.RmemAlloc, m.RcvBuf, m.WmemAlloc, m.SndBuf, m.FwdAlloc, m.WmemQueued, m.OptMem, m.Backlog, m.Drops))
	}
	if i := r.Snap().Info; i != nil {
		// As ss -i spells them.
		extra = append(extra, fmt.Sprintf("rto:%g rtt:%g/%g mss:%d cwnd:%d bytes_acked:%d bytes_received:%d segs_out:%d segs_in:%d retrans:%d/%d lastsnd:%d lastrcv:%d lastack:%d",
			float64(i.Rto)/1000, float64(i.Rtt)/1000, float64(i.Rttvar)/1000, i.Snd_mss, i.Snd_cwnd,
			i.Bytes_acked, i.Bytes_received, i.Segs_out, i.Segs_in, i.Retrans, i.Total_retrans,
			i.Last_data_sent, i.Last_data_recv, i.Last_ack_recv))
	}
	// Who the owner is, last: what ss does not show.
	if w := r.OwnerID.Label(); w != "" && r.OwnerKnown {
		extra = append(extra, safetext.Escape(w))
	}
	b = append(b, strings.Join(extra, " ")...)
	b = append(b, '\n')
	t.buf = b
	_, err := t.w.Write(b)
	return err
}

// FormatTimer writes a timer's remaining time the way ss -o does, so
// that it reads the same: minutes, then seconds, then milliseconds, the
// smaller units dropped as the larger grow: 208ms, 1.500ms (1.5 s, in
// ss's own spelling), 59sec, 2min30sec, 119min.
func FormatTimer(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	minutes := ms / 60000
	secs := (ms / 1000) % 60
	msecs := ms % 1000
	var b strings.Builder
	if minutes > 0 {
		msecs = 0
		b.WriteString(strconv.FormatInt(minutes, 10) + "min")
		if minutes > 9 {
			secs = 0
		}
	}
	if secs > 0 {
		if secs > 9 {
			msecs = 0
		}
		b.WriteString(strconv.FormatInt(secs, 10))
		if msecs > 0 {
			b.WriteString(".")
		} else {
			b.WriteString("sec")
		}
	}
	if msecs > 0 {
		b.WriteString(strconv.FormatInt(msecs+1000, 10)[1:] + "ms")
	}
	if b.Len() == 0 {
		return "0ms"
	}
	return b.String()
}
