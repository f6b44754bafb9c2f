package sslayout

import (
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func TestStateName(t *testing.T) {
	want := []string{"UNKNOWN", "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
		"UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING", "SYN-RECV", "UNKNOWN"}
	for s, w := range want {
		if got := StateName(uint8(s)); got != w {
			t.Errorf("StateName(%d) = %q, want %q", s, got, w)
		}
	}
	if got := StateName(255); got != "UNKNOWN" {
		t.Errorf("StateName(255) = %q", got)
	}
}

// Seen from ss in a namespace with these sockets (§2 and the addresses
// added to lo).
func TestAddr(t *testing.T) {
	const in, in6 = syscall.AF_INET, syscall.AF_INET6
	for _, tt := range []struct {
		family uint16
		addr   string
		v6only int8
		ifname string
		want   string
	}{
		{in, "127.0.0.1", -1, "", "127.0.0.1"},
		{in, "0.0.0.0", 0, "", "0.0.0.0"},
		{in, "::ffff:127.0.0.1", -1, "", "127.0.0.1"},
		{in, "127.0.0.1", -1, "lo", "127.0.0.1%lo"},
		{in6, "::", -1, "", "*"},
		{in6, "::", 0, "", "*"},
		{in6, "::", 1, "", "[::]"},
		{in6, "::", 0, "lo", "*%lo"},
		{in6, "::1", 1, "", "[::1]"},
		{in6, "127.0.0.1", -1, "", "[::ffff:127.0.0.1]"},
		{in6, "::ffff:127.0.0.1", -1, "", "[::ffff:127.0.0.1]"},
		{in6, "0.0.0.0", 0, "", "[::ffff:0.0.0.0]"},
		{in6, "::1.2.3.4", 1, "", "[::1.2.3.4]"},
		{in6, "::0.1.0.0", 1, "", "[::0.1.0.0]"},
		{in6, "::0.0.1.2", 1, "", "[::102]"},
		{in6, "::ffff:0:1.2.3.4", 1, "", "[::ffff:0:102:304]"},
		{in6, "2001:db8:0:0:1:0:0:1", 1, "", "[2001:db8::1:0:0:1]"},
		{in6, "fe80::fc13:98ff:fe94:8b08", 1, "v0", "[fe80::fc13:98ff:fe94:8b08]%v0"},
		{in6, "fe80::1%eth0", 1, "", "[fe80::1]"},
	} {
		if got := Addr(tt.family, netip.MustParseAddr(tt.addr), tt.v6only, tt.ifname); got != tt.want {
			t.Errorf("Addr(%d, %s, %d, %q) = %q, want %q", tt.family, tt.addr, tt.v6only, tt.ifname, got, tt.want)
		}
	}
}

func TestPort(t *testing.T) {
	for _, tt := range []struct {
		p         uint16
		svc, want string
	}{{0, "", "*"}, {0, "tcpmux", "*"}, {22, "ssh", "ssh"}, {22, "", "22"}, {57000, "", "57000"}} {
		if got := Port(tt.p, tt.svc); got != tt.want {
			t.Errorf("Port(%d, %q) = %q, want %q", tt.p, tt.svc, got, tt.want)
		}
	}
}

// §1.7: the texts seen from ss 6.1, and those its print_ms_timer gives.
func TestTimer(t *testing.T) {
	for _, tt := range []struct {
		ms   int64
		want string
	}{
		{4276, "4.276ms"}, {4920, "4.920ms"}, {14100, "14sec"}, {59999, "59sec"}, {64200, "1min4sec"},
		{74900, "1min14sec"}, {11*60000 + 30000, "11min"}, {116*60000 + 59999, "116min"}, {292, "292ms"},
		{64, "064ms"}, {0, ""}, {120000, "2min"}, {5000, "5sec"}, {1001, "1.001ms"}, {9999, "9.999ms"},
		{10500, "10sec"}, {599999, "9min59sec"}, {-5, ""}, {1 << 40, "71582min"},
	} {
		want := " timer:(on," + tt.want + ",3)"
		if got := Timer("on", time.Duration(tt.ms)*time.Millisecond, 3); got != want {
			t.Errorf("Timer(%dms) = %q, want %q", tt.ms, got, want)
		}
	}
	if got := Timer("timewait", 44*time.Second+500*time.Millisecond, 0); got != " timer:(timewait,44sec,0)" {
		t.Errorf("timewait: %q", got)
	}
}

func TestUsers(t *testing.T) {
	if got := Users(nil); got != "" {
		t.Errorf("Users(nil) = %q", got)
	}
	o := []Owner{{"python3", 12377, 3}, {"python3", 12377, 4}, {"python3", 12419, 3}, {"python3", 12419, 4}}
	want := ` users:(("python3",pid=12419,fd=4),("python3",pid=12419,fd=3),("python3",pid=12377,fd=4),("python3",pid=12377,fd=3))`
	if got := Users(o); got != want {
		t.Errorf("Users = %q, want %q", got, want)
	}
	if o[0].FD != 3 {
		t.Error("Users reordered its argument")
	}
	if got := Users([]Owner{{`a "b"`, 1, 2}}); got != ` users:(("a "b"",pid=1,fd=2))` {
		t.Errorf("comm is printed as is: %q", got)
	}
}
