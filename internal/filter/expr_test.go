package filter

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/tcpstate"
)

// subjects the expression tests match against.
var (
	kafkaSyn = Subject{State: tcpstate.SynSent, Family: unix.AF_INET,
		Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("10.1.2.3"),
		SPort: 40000, DPort: 9092, OwnerKnown: true, PID: 42, Comm: "java"}
	webEstab = Subject{State: tcpstate.Established, Family: unix.AF_INET6,
		Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"),
		SPort: 443, DPort: 51000, OwnerKnown: true, PID: 7, Comm: "nginx"}
	orphanWait = Subject{State: tcpstate.TimeWait, Family: unix.AF_INET,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"),
		SPort: 5555, DPort: 9092}
)

// fakeHosts stands in for the resolver in tests: no lookups leave the
// machine.
func fakeHosts(t *testing.T) {
	saved := lookupHost
	t.Cleanup(func() { lookupHost = saved })
	hosts := map[string][]netip.Addr{
		"localhost":     {netip.MustParseAddr("127.0.0.1")},
		"kafka.example": {netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("10.1.2.3")},
		"web.example":   {netip.MustParseAddr("fd00::2")},
	}
	lookupHost = func(_ context.Context, name string) ([]netip.Addr, error) {
		if a, ok := hosts[name]; ok {
			return a, nil
		}
		return nil, errors.New("no such host (test resolver)")
	}
}

func TestExprMatch(t *testing.T) {
	fakeHosts(t)
	all := []*Subject{&kafkaSyn, &webEstab, &orphanWait}
	tests := []struct {
		expr string
		want []*Subject
	}{
		{"dport = :9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport == 9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport eq :9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport :9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport=:9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport != :9092", []*Subject{&webEstab}},
		{"dport ne 9092", []*Subject{&webEstab}},
		{"sport > :1024", []*Subject{&kafkaSyn, &orphanWait}},
		{"sport gt 1024", []*Subject{&kafkaSyn, &orphanWait}},
		{"sport < 1024", []*Subject{&webEstab}},
		{"sport lt :1024", []*Subject{&webEstab}},
		{"sport >= 5555", []*Subject{&kafkaSyn, &orphanWait}},
		{"sport>=5556", []*Subject{&kafkaSyn}},
		{"sport ge 443", all},
		{"sport <= 443", []*Subject{&webEstab}},
		{"sport le 442", nil},
		{"sport = :https", []*Subject{&webEstab}},
		{"dport = *", all},
		{"dst 10.1.2.3", []*Subject{&kafkaSyn}},
		{"dst = 10.0.0.0/8", []*Subject{&kafkaSyn}},
		{"dst 10.1.2.3:9092", []*Subject{&kafkaSyn}},
		{"dst 10.1.2.3:9093", nil},
		{"dst *:9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dst :9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"dst != 10.0.0.0/8", []*Subject{&webEstab, &orphanWait}},
		{"src fd00::/64", []*Subject{&webEstab}},
		{"src [fd00::1]:443", []*Subject{&webEstab}},
		{"src [fd00::]/8", []*Subject{&webEstab}},
		{"src ::ffff:127.0.0.1", nil}, // an IPv6 prefix: IPv6 sockets only (ss's kernel filter)
		{"state syn-sent", []*Subject{&kafkaSyn}},
		{"state SYN_SENT", []*Subject{&kafkaSyn}},
		{"state = established,time-wait", []*Subject{&webEstab, &orphanWait}},
		{"state connected", all}, // ss: every state but listening and close
		{"state synchronized", []*Subject{&webEstab, &orphanWait}},
		{"state != syn-sent", []*Subject{&webEstab, &orphanWait}},
		{"exclude time-wait", []*Subject{&kafkaSyn, &webEstab}},
		{"pid = 42", []*Subject{&kafkaSyn}},
		{"pid != 42", []*Subject{&webEstab}}, // unknown owner matches no pid test
		{"pid > 10", []*Subject{&kafkaSyn}},
		{"comm nginx", []*Subject{&webEstab}},
		{"comm != nginx", []*Subject{&kafkaSyn}}, // nor a comm test
		{"dport = :9092 and ( state syn-sent or state syn-recv )", []*Subject{&kafkaSyn}},
		{"dport = :9092 && ( state syn-sent || state time-wait )", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport = :9092 & state time-wait", []*Subject{&orphanWait}},
		{"dport = :9092 state time-wait", []*Subject{&orphanWait}}, // juxtaposition is and
		{"state syn-sent | state established", []*Subject{&kafkaSyn, &webEstab}},
		{"not dport = :9092", []*Subject{&webEstab}},
		{"! dport = :9092", []*Subject{&webEstab}},
		{"!(dport = :9092 and state time-wait)", []*Subject{&kafkaSyn, &webEstab}},
		{"not not state syn-sent", []*Subject{&kafkaSyn}},
		// As in ss, no precedence: left to right, "(a or b) and c".
		{"state syn-sent or state time-wait and sport = 443", nil},
		{"state syn-sent or state time-wait and sport = 5555", []*Subject{&orphanWait}},
		{"sport = 5555 and state time-wait or state syn-sent", []*Subject{&kafkaSyn, &orphanWait}},
		// ss's readings of values.
		{"dport = :70000", nil}, // any number; beyond 65535 it never matches
		{"dport = 0x2384", []*Subject{&kafkaSyn, &orphanWait}},
		{"dport = 021604", []*Subject{&kafkaSyn, &orphanWait}}, // octal 9092
		{"dport = :-1", all},
		{"src 127.1", nil}, // 127.1.0.0, not 127.0.0.1
		{"src 127/8", []*Subject{&orphanWait}},
		{"src 0x7f.0.0.1", []*Subject{&orphanWait}},
		{"src 127.0.0.0/255.0.0.0", []*Subject{&orphanWait}},
		{"dst 10.1.2.3:9092", []*Subject{&kafkaSyn}},
		{"src fd00::1:443", []*Subject{&webEstab}}, // split at the last colon
		{"src fd00::1", []*Subject{&webEstab}},     // beyond ss: a bare IPv6 address
		{"src [fd00::1]", []*Subject{&webEstab}},
		{"dst ::ffff:127.0.0.1:9092", nil},
		{"dst 127.0.0.1:9092", []*Subject{&orphanWait}},
		{"dst 0.0.0.0/0", []*Subject{&kafkaSyn, &orphanWait}}, // its family's addresses
		{"not dst 0.0.0.0/0", []*Subject{&webEstab}},
		{"dst ::/0", []*Subject{&webEstab}},
		{"dst any", all},
		{"dst all:9092", []*Subject{&kafkaSyn, &orphanWait}},
		{"src inet:127.0.0.1", []*Subject{&orphanWait}},
		{"src inet6:fd00::/8 or sport = 5555", []*Subject{&webEstab}},      // inet6: restricts it all
		{"src inet:127.0.0.1 or src inet6:fd00::1", []*Subject{&webEstab}}, // the last family named wins
		{"src localhost", []*Subject{&orphanWait}},                         // a host name (stubbed: no lookups in tests)
		{"dst kafka.example:9092", []*Subject{&kafkaSyn}},                  // every address of a name
		{"dst web.example", []*Subject{&webEstab}},
		{"dev = 0", all},
		{"dev lo", nil},
		{"fwmark 0", all},
		{"fwmark 0x1/0x1", nil},
		{"autobound", []*Subject{&kafkaSyn}}, // 40000 is in the ephemeral range here
		{"( state syn-sent or state time-wait ) and sport = 5555", []*Subject{&orphanWait}},
		{"((sport = 443))", []*Subject{&webEstab}},
	}
	for _, tt := range tests {
		e, err := ParseExpr(strings.Fields(tt.expr))
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		check := func(e Expr, how string) {
			var got []*Subject
			for _, s := range all {
				if e.Match(s) {
					got = append(got, s)
				}
			}
			if !sameSubjects(got, tt.want) {
				t.Errorf("%q%s matched %v, want %v", tt.expr, how, comms(got), comms(tt.want))
			}
		}
		check(e, "")
		// The canonical form reads back to the same meaning.
		again, err := ParseExpr([]string{e.String()})
		if err != nil {
			t.Errorf("%q: canonical form %q does not parse: %v", tt.expr, e.String(), err)
			continue
		}
		check(again, " (as "+e.String()+")")
	}
}

// The arguments are joined as ss joins them: one quoted argument and
// several unquoted ones mean the same.
func TestExprArgs(t *testing.T) {
	a, err := ParseExpr([]string{"dport = :9092 and ( state syn-sent )"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseExpr([]string{"dport", "=", ":9092", "and", "(", "state", "syn-sent", ")"})
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("%q != %q", a, b)
	}
	if e, err := ParseExpr(nil); e != nil || err != nil {
		t.Errorf("no arguments: %v, %v; want nil, nil", e, err)
	}
	if e, err := ParseExpr([]string{"  "}); e != nil || err != nil {
		t.Errorf("blank argument: %v, %v; want nil, nil", e, err)
	}
}

func TestExprErrors(t *testing.T) {
	fakeHosts(t)
	tests := []struct {
		expr  string
		token string // the token the caret points at; "" for the end
		msg   string // part of the message
	}{
		{"dport = :9092 and ( stat syn-sent )", "stat", `unknown keyword "stat"`},
		{"dport = :nosuchservice", ":nosuchservice", "service name"},
		{"dport >", "", "needs a port"},
		{"dport", "", "needs a value"},
		{"dport = = 1", "=", "second operator"},
		{"dport ! 1", "!", "write != or ne"},
		{"dport > *", "*", "only goes with ="},
		{"state synsent", "synsent", `unknown TCP state "synsent"`},
		{"state > established", ">", "= or != only"},
		{"dst 10.0.0.1/33", "10.0.0.1/33", "bad address"},
		{"dst [::1", "[::1", "bad address"},
		{"dst", "", "needs a value"},
		{"( dport = 1", "(", "unbalanced '('"},
		{"( dport = 1 dst", "", "needs a value"},
		{"dport = 1 )", ")", "unbalanced ')'"},
		{"()", ")", "unexpected ')'"},
		{"and dport = 1", "and", "needs a test on its left"},
		{"dport = 1 or", "", "ends where a test was expected"},
		{"dport = 1 and and", "and", "needs a test on its left"},
		{"not", "", "ends where a test was expected"},
		{"pid = x", "x", "bad process id"},
		{"comm", "", "needs a value"},
		{"dport = (", "(", "needs a port"},
	}
	for _, tt := range tests {
		_, err := ParseExpr([]string{tt.expr})
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: got %v, want a *SyntaxError", tt.expr, err)
			continue
		}
		if se.Token != tt.token {
			t.Errorf("%q: error at token %q, want %q (%v)", tt.expr, se.Token, tt.token, err)
		}
		if !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("%q: message %q does not say %q", tt.expr, se.Msg, tt.msg)
		}
		// The caret line points under the token.
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != 3 {
			t.Errorf("%q: want message, input and caret lines, got %q", tt.expr, err)
			continue
		}
		caret := strings.Index(lines[2], "^") - 2
		if caret != se.Pos || (tt.token != "" && tt.expr[caret:caret+len(tt.token)] != tt.token) {
			t.Errorf("%q: caret at %d, token %q at %d:\n%s", tt.expr, caret, tt.token, se.Pos, err)
		}
	}
}

func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{
		"dport = :9092 and ( state syn-sent or state syn-recv )",
		"!(src [fd00::1]:443 || dst 10.0.0.0/8) & pid >= 1 comm java",
		"exclude time-wait", "dst *:80", "sport le :https", "((", "))", "!",
	} {
		f.Add(s)
	}
	// Random words must not become DNS queries.
	lookupHost = func(context.Context, string) ([]netip.Addr, error) {
		return nil, errors.New("no host lookups while fuzzing")
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExpr([]string{s})
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%q: error %v is not a *SyntaxError", s, err)
			}
			if se.Pos < 0 || se.Pos > len(se.Input) {
				t.Fatalf("%q: position %d outside the input", s, se.Pos)
			}
			_ = err.Error()
			return
		}
		if e == nil {
			return
		}
		again, err := ParseExpr([]string{e.String()})
		if err != nil {
			t.Fatalf("%q: canonical %q does not parse: %v", s, e.String(), err)
		}
		for _, sub := range []*Subject{&kafkaSyn, &webEstab, &orphanWait} {
			if e.Match(sub) != again.Match(sub) {
				t.Fatalf("%q and its canonical %q disagree on %v", s, e.String(), sub.Comm)
			}
		}
	})
}

func sameSubjects(a, b []*Subject) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func comms(ss []*Subject) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Comm+"/"+s.State.String())
	}
	return out
}
