package main

// socktrace ss against iproute2's ss, on a population of real sockets in a
// namespace the test makes: the same command lines must print the same
// bytes (timers, which move between the two runs, aside).

import (
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/socktrace/socktrace/internal/testnet"
	"golang.org/x/sys/unix"
)

// ssPopulation makes, in ns, listeners on IPv4, IPv6 (v6only and dual
// stack) and a second address; established pairs (IPv4, IPv6,
// IPv4-mapped, one with unread data); a close-wait and fin-wait-2 pair; a
// time-wait socket; and a connect stuck in syn-sent (its SYNs dropped by
// nftables). Everything stays until the test ends.
func ssPopulation(t *testing.T, ns *testnet.NS) {
	t.Helper()
	nft := exec.Command("nsenter", "--net="+ns.Path(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table inet sstest {\n chain in {\n  type filter hook input priority 0;\n  tcp dport 9200 drop\n }\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	var keep []interface{ Close() error }
	t.Cleanup(func() {
		for _, c := range keep {
			c.Close()
		}
	})
	v6only := func(on int) net.ListenConfig {
		return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, on) })
			return serr
		}}
	}
	ns.Run(t, func() error {
		listen := func(lc net.ListenConfig, network, addr string) net.Listener {
			ln, err := lc.Listen(t.Context(), network, addr)
			if err != nil {
				t.Fatalf("listen %s: %v", addr, err)
			}
			keep = append(keep, ln)
			return ln
		}
		ssh := listen(net.ListenConfig{}, "tcp4", "127.0.0.1:22")
		web := listen(net.ListenConfig{}, "tcp4", "0.0.0.0:8080")
		listen(v6only(1), "tcp6", "[::]:80")
		dual := listen(v6only(0), "tcp", "[::]:5000")
		https := listen(net.ListenConfig{}, "tcp6", "[::1]:443")
		listen(net.ListenConfig{}, "tcp4", "127.0.0.2:3030")
		dial := func(network, from, to string) net.Conn {
			la, err := net.ResolveTCPAddr(network, from)
			if err != nil {
				t.Fatal(err)
			}
			c, err := (&net.Dialer{LocalAddr: la}).Dial(network, to)
			if err != nil {
				t.Fatalf("dial %s -> %s: %v", from, to, err)
			}
			keep = append(keep, c)
			return c
		}
		accept := func(ln net.Listener) net.Conn {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			keep = append(keep, c)
			return c
		}
		c := dial("tcp4", "127.0.0.1:40000", "127.0.0.1:22")
		accept(ssh)
		c.Write(make([]byte, 100)) // unread: Recv-Q 100 on the server side
		dial("tcp6", "[::1]:40001", "[::1]:443")
		accept(https)
		dial("tcp4", "127.0.0.1:40002", "127.0.0.1:5000")
		accept(dual)
		// close-wait (client) and fin-wait-2 (server)
		dial("tcp4", "127.0.0.1:40004", "127.0.0.1:8080")
		accept(web).Close()
		// time-wait: the client closes first, then the server
		tw := dial("tcp4", "127.0.0.1:40003", "127.0.0.1:8080")
		s := accept(web)
		tw.Close()
		s.Read(make([]byte, 1))
		s.Close()
		// syn-sent: a connect whose SYNs nftables drops
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, fdCloser(fd))
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9200, Addr: [4]byte{127, 0, 0, 1}}); err != unix.EINPROGRESS {
			t.Fatalf("connect to 127.0.0.1:9200: %v, want EINPROGRESS", err)
		}
		return nil
	})
}

type fdCloser int

func (f fdCloser) Close() error { return unix.Close(int(f)) }

// timers hides what moves between two runs: timer values and the
// retransmit count of the syn-sent socket.
var timers = regexp.MustCompile(`timer:\(([a-z]+),[^,]*,[0-9]+\)`)

// ssBoth runs ss and socktrace ss with args in ns.
func ssBoth(t *testing.T, ns *testnet.NS, args ...string) (want, got string) {
	t.Helper()
	run := func(bin ...string) string {
		cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path()}, append(bin, args...)...)...)
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("%v %v: %v\n%s", bin, args, err, stderr)
		}
		if !timers.Match(out) {
			return string(out)
		}
		// A timer's text changes length as it runs down: the last
		// column's padding (trailing blanks) with it.
		lines := strings.Split(timers.ReplaceAllString(string(out), "timer:($1,T,N)"), "\n")
		for i := range lines {
			lines[i] = strings.TrimRight(lines[i], " ")
		}
		return strings.Join(lines, "\n")
	}
	want = run("ss")
	got = run(socktraceBin(t), "ss")
	return want, got
}

// TestSSVerbatim: the commands of the post that started socktrace, and
// more, print what ss prints.
func TestSSVerbatim(t *testing.T) {
	ns := testnet.New(t)
	ssPopulation(t, ns)
	for _, args := range [][]string{
		// The seed: ss's command lines from the incident.
		{"-rnt", "dst", ":9200"},
		{"-tarn", "state", "close-wait"},
		{"-arnto", "state", "time-wait"},
		{"-nltp", "state", "listening", "src", ":3030"},
		{"-antlp", "state", "syn-sent", "dst", ":9200"},
		// Options and states.
		{"-t"}, {"-tn"}, {"-tan"}, {"-tanH"}, {"-tln"}, {"-tlnH"}, {"-ta"}, {"-tl"},
		{"-tanp"}, {"-tano"}, {"-tanoe"}, {"-tanm"}, {"-tanmO"}, {"-tn", "-4"}, {"-tn", "-6"}, {"-tan", "-46"},
		{"-tn", "state", "established"}, {"-tn", "state", "connected"}, {"-tn", "exclude", "established"},
		{"-tn", "state", "listening", "state", "established"}, {"-tn", "state", "bucket"},
		{"-tan", "state", "fin-wait-2"}, {"-ta", "state", "synchronized"},
		// Expressions.
		{"-tan", "sport", "=", ":22", "or", "dport", "=", ":22"},
		{"-tan", "dst", "0.0.0.0/0"}, {"-tan", "src", "127.1"}, {"-tan", "src", "127/8"},
		{"-tan", "src", "::1:443"}, {"-tan", "src", "[::1]:443"}, {"-tan", "src", "::1/128"},
		{"-tan", "src", "inet:127.0.0.1"}, {"-tan", "dst", "[::ffff:127.0.0.1]"},
		{"-tan", "sport", ">=", ":5000", "and", "not", "dst", "127.0.0.1"},
		{"-tan", "sport = :22 or sport = :5000 and dport = :40002"},
		{"-tan", "( sport = :80 or sport = :443 ) and src ::/0"},
		{"-tan", "sport", "gt", "1024", "dport", "leq", "5000"},
		{"-tan", "autobound"}, {"-tan", "sport", "gt", "1024", "and", "autobound"},
	} {
		want, got := ssBoth(t, ns, args...)
		if got != want {
			t.Errorf("ss %s:\n--- ss\n%s--- socktrace ss\n%s", strings.Join(args, " "), want, got)
		}
	}
}
