package ss

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/socktrace/socktrace/internal/safetext"
	"github.com/socktrace/socktrace/internal/snapshot"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

// tcpi_options bits (linux/tcp.h).
const (
	optTimestamps = 1
	optSack       = 2
	optWscale     = 4
	optECN        = 8
	optECNSeen    = 16
	optSynData    = 32
)

// writeInfo writes ss -i's items for a socket's tcp_info, in ss 6.1's
// order and forms (tcp_show_info / tcp_stats_print), each only when it is
// not zero unless said.
func writeInfo(b *strings.Builder, s *snapshot.Socket, o *Options) {
	i := s.Info
	raw := (*[8]byte)(unsafe.Pointer(i))
	wscale, appLimited := raw[6], raw[7]&1 != 0
	item := func(format string, args ...any) { fmt.Fprintf(b, " "+format, args...) }
	if o.Timers {
		if i.Options&optTimestamps != 0 {
			item("ts")
		}
		if i.Options&optSack != 0 {
			item("sack")
		}
		if i.Options&optECN != 0 {
			item("ecn")
		}
		if i.Options&optECNSeen != 0 {
			item("ecnseen")
		}
		if i.Options&optSynData != 0 {
			item("fastopen")
		}
	}
	if s.Cong != "" {
		item("%s", s.Cong)
	}
	if i.Options&optWscale != 0 {
		item("wscale:%d,%d", wscale&0xf, wscale>>4)
	}
	if i.Rto != 0 && i.Rto != 3000000 {
		item("rto:%s", g(float64(i.Rto)/1000))
	}
	if i.Backoff != 0 {
		item("backoff:%d", i.Backoff)
	}
	if i.Rtt != 0 {
		item("rtt:%s/%s", g(float64(i.Rtt)/1000), g(float64(i.Rttvar)/1000))
	}
	if i.Ato != 0 {
		item("ato:%s", g(float64(i.Ato)/1000))
	}
	if i.Snd_mss != 0 {
		item("mss:%d", i.Snd_mss)
	}
	if i.Pmtu != 0 {
		item("pmtu:%d", i.Pmtu)
	}
	if i.Rcv_mss != 0 {
		item("rcvmss:%d", i.Rcv_mss)
	}
	if i.Advmss != 0 {
		item("advmss:%d", i.Advmss)
	}
	if i.Snd_cwnd != 0 {
		item("cwnd:%d", i.Snd_cwnd)
	}
	if i.Snd_ssthresh != 0 && i.Snd_ssthresh < 0xFFFF {
		item("ssthresh:%d", i.Snd_ssthresh)
	}
	for _, v := range []struct {
		name string
		n    uint64
	}{{"bytes_sent", i.Bytes_sent}, {"bytes_retrans", i.Bytes_retrans}, {"bytes_acked", i.Bytes_acked},
		{"bytes_received", i.Bytes_received}, {"segs_out", uint64(i.Segs_out)}, {"segs_in", uint64(i.Segs_in)},
		{"data_segs_out", uint64(i.Data_segs_out)}, {"data_segs_in", uint64(i.Data_segs_in)}} {
		if v.n != 0 {
			item("%s:%d", v.name, v.n)
		}
	}
	rtt := float64(i.Rtt)
	if ci := s.CongInfo; ci != nil {
		switch ci.Kind {
		case snapshot.CongVegas:
			if ci.V[0] != 0 && ci.V[2] != 0 && ci.V[2] != 0x7fffffff {
				rtt = float64(ci.V[2]) // vegas's own rtt sizes "send"
			}
		case snapshot.CongDCTCP:
			if ci.V[0]&0xffff != 0 {
				item("dctcp:(ce_state:%d,alpha:%d,ab_ecn:%d,ab_tot:%d)", ci.V[0]>>16, ci.V[1], ci.V[2], ci.V[3])
			} else {
				item("dctcp:fallback_mode")
			}
		case snapshot.CongBBR:
			t := " bbr:(bw:" + bw(float64(uint64(ci.V[1])<<32|uint64(ci.V[0]))*8, o.Numeric) + "bps,mrtt:" + g(float64(ci.V[2])/1000)
			if ci.V[3] != 0 {
				t += ",pacing_gain:" + g(float64(ci.V[3])/256)
			}
			if ci.V[4] != 0 {
				t += ",cwnd_gain:" + g(float64(ci.V[4])/256)
			}
			b.WriteString(t + ")")
		}
	}
	if rtt > 0 && i.Snd_mss != 0 && i.Snd_cwnd != 0 {
		item("send %sbps", bw(float64(i.Snd_cwnd)*float64(i.Snd_mss)*8e6/rtt, o.Numeric))
	}
	if i.Last_data_sent != 0 {
		item("lastsnd:%d", i.Last_data_sent)
	}
	if i.Last_data_recv != 0 {
		item("lastrcv:%d", i.Last_data_recv)
	}
	if i.Last_ack_recv != 0 {
		item("lastack:%d", i.Last_ack_recv)
	}
	if i.Pacing_rate != 0 && i.Pacing_rate != ^uint64(0) {
		t := " pacing_rate " + bw(float64(i.Pacing_rate)*8, o.Numeric) + "bps"
		if i.Max_pacing_rate != 0 && i.Max_pacing_rate != ^uint64(0) {
			t += "/" + bw(float64(i.Max_pacing_rate)*8, o.Numeric) + "bps"
		}
		b.WriteString(t)
	}
	if i.Delivery_rate != 0 {
		item("delivery_rate %sbps", bw(float64(i.Delivery_rate)*8, o.Numeric))
	}
	if i.Delivered != 0 {
		item("delivered:%d", i.Delivered)
	}
	if i.Delivered_ce != 0 {
		item("delivered_ce:%d", i.Delivered_ce)
	}
	if appLimited {
		item("app_limited")
	}
	if i.Busy_time != 0 {
		t := fmt.Sprintf(" busy:%dms", i.Busy_time/1000)
		if i.Rwnd_limited != 0 {
			t += fmt.Sprintf(" rwnd_limited:%dms(%.1f%%)", i.Rwnd_limited/1000, 100*float64(i.Rwnd_limited)/float64(i.Busy_time))
		}
		if i.Sndbuf_limited != 0 {
			t += fmt.Sprintf(" sndbuf_limited:%dms(%.1f%%)", i.Sndbuf_limited/1000, 100*float64(i.Sndbuf_limited)/float64(i.Busy_time))
		}
		b.WriteString(t)
	}
	if i.Unacked != 0 {
		item("unacked:%d", i.Unacked)
	}
	if i.Retrans != 0 || i.Total_retrans != 0 {
		item("retrans:%d/%d", i.Retrans, i.Total_retrans)
	}
	if i.Lost != 0 {
		item("lost:%d", i.Lost)
	}
	if i.Sacked != 0 && s.State != tcpstate.Listen {
		item("sacked:%d", i.Sacked)
	}
	if i.Dsack_dups != 0 {
		item("dsack_dups:%d", i.Dsack_dups)
	}
	if i.Fackets != 0 {
		item("fackets:%d", i.Fackets)
	}
	if i.Reordering != 3 {
		item("reordering:%d", i.Reordering)
	}
	if i.Reord_seen != 0 {
		item("reord_seen:%d", i.Reord_seen)
	}
	if i.Rcv_rtt != 0 {
		item("rcv_rtt:%s", g(float64(i.Rcv_rtt)/1000))
	}
	if i.Rcv_space != 0 {
		item("rcv_space:%d", i.Rcv_space)
	}
	if i.Rcv_ssthresh != 0 {
		item("rcv_ssthresh:%d", i.Rcv_ssthresh)
	}
	if i.Notsent_bytes != 0 {
		item("notsent:%d", i.Notsent_bytes)
	}
	if i.Min_rtt != 0 && i.Min_rtt != ^uint32(0) {
		item("minrtt:%s", g(float64(i.Min_rtt)/1000))
	}
	if i.Rcv_ooopack != 0 {
		item("rcv_ooopack:%d", i.Rcv_ooopack)
	}
	if i.Snd_wnd != 0 {
		item("snd_wnd:%d", i.Snd_wnd)
	}
}

// g is C's printf %g: 6 significant digits, no trailing zeros.
func g(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// bw is ss's sprint_bw: with -n the number, else k, M, G, T with 3
// significant digits.
func bw(v float64, numeric bool) string {
	switch {
	case numeric:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1e12:
		return cG3(v/1e12) + "T"
	case v >= 1e9:
		return cG3(v/1e9) + "G"
	case v >= 1e6:
		return cG3(v/1e6) + "M"
	case v >= 1e3:
		return cG3(v/1e3) + "k"
	}
	return g(v)
}

// cG3 is C's %.3g.
func cG3(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }

// writeULP writes ss's items for a socket's upper layer protocol (tcp_show_info's
// INET_DIAG_ULP_INFO part): " tcp-ulp-NAME", then kTLS's version, cipher and
// configurations, or an MPTCP subflow's flags, tokens and sequence numbers.
func writeULP(b *strings.Builder, u *snapshot.ULP) {
	if u.Name != "" {
		b.WriteString(" tcp-ulp-" + safetext.Escape(u.Name))
	}
	ne := binary.NativeEndian
	u16 := func(v []byte) uint16 {
		if len(v) < 2 {
			return 0
		}
		return ne.Uint16(v)
	}
	// ss reads 4 bytes of any of them; the kernel puts some as u16
	// (MAP_DATALEN) and zeroes the padding.
	u32 := func(v []byte) uint32 {
		var w [4]byte
		copy(w[:], v)
		return ne.Uint32(w[:])
	}
	if t := u.TLS; t != nil {
		if v, ok := t[1]; ok { // TLS_INFO_VERSION
			switch n := u16(v); n {
			case 0x0303:
				b.WriteString(" version: 1.2")
			case 0x0304:
				b.WriteString(" version: 1.3")
			default:
				fmt.Fprintf(b, " version: unknown(%d)", n)
			}
		}
		if v, ok := t[2]; ok { // TLS_INFO_CIPHER
			switch u16(v) {
			case 51:
				b.WriteString(" cipher: aes-gcm-128")
			case 52:
				b.WriteString(" cipher: aes-gcm-256")
			}
		}
		for _, c := range []struct {
			typ  uint16
			name string
		}{{4, "rxconf"}, {3, "txconf"}} { // TLS_INFO_RXCONF, TLS_INFO_TXCONF
			v, ok := t[c.typ]
			if !ok {
				continue
			}
			switch n := u16(v); n {
			case 1:
				b.WriteString(" " + c.name + ": none")
			case 2:
				b.WriteString(" " + c.name + ": sw")
			case 3:
				b.WriteString(" " + c.name + ": hw")
			case 4:
				b.WriteString(" " + c.name + ": hw-record")
			default:
				fmt.Fprintf(b, " %s: unknown(%d)", c.name, n)
			}
		}
		if _, ok := t[5]; ok { // TLS_INFO_ZC_RO_TX
			b.WriteString(" zc_ro_tx")
		}
	}
	if m := u.MPTCP; m != nil {
		if v, ok := m[8]; ok { // MPTCP_SUBFLOW_ATTR_FLAGS
			flags, caps := u32(v), ""
			for i, c := range "MmJjBbecv" {
				if flags&(1<<i) != 0 {
					caps += string(c)
				}
			}
			if flags != 0 {
				b.WriteString(" flags:" + caps)
			}
		}
		tr, okTR := m[1]
		tl, okTL := m[2]
		ir, okIR := m[9]
		il, okIL := m[10]
		if okTR && okTL && okIR && okIL && len(ir) > 0 && len(il) > 0 {
			fmt.Fprintf(b, " token:%04x(id:%d)/%04x(id:%d)", u32(tr), ir[0], u32(tl), il[0])
		}
		if v, ok := m[4]; ok && len(v) >= 8 { // MAP_SEQ
			fmt.Fprintf(b, " seq:%x", ne.Uint64(v))
		}
		if v, ok := m[5]; ok { // MAP_SFSEQ
			fmt.Fprintf(b, " sfseq:%x", u32(v))
		}
		if v, ok := m[6]; ok { // SSN_OFFSET
			fmt.Fprintf(b, " ssnoff:%x", u32(v))
		}
		if v, ok := m[7]; ok { // MAP_DATALEN
			fmt.Fprintf(b, " maplen:%x", u32(v))
		}
	}
}
