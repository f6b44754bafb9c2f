package main

// Records that say what the kernel says: the local port and the SYNs of
// a failed connect, the data bytes of a connection, everywhere socktrace
// shows them.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// timedOutConnect connects, in ns, to 127.0.0.1:port with one SYN
// retransmit allowed (TCP_SYNCNT 1), expecting ETIMEDOUT, and returns the
// local port the kernel gave the socket (getsockname).
func timedOutConnect(t *testing.T, ns *testnet.NS, port int) int {
	t.Helper()
	var local int
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if !errors.Is(err, unix.ETIMEDOUT) {
			return fmt.Errorf("connect to a port whose SYNs are dropped: %v, want ETIMEDOUT", err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		local = sa.(*unix.SockaddrInet4).Port
		return nil
	})
	return local
}

// nftPackets reads the packets of the named counter of table inet TABLE.
func nftPackets(t *testing.T, ns *testnet.NS, table, counter string) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "nft", "list", "counter", "inet", table, counter).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list counter: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no packets in nft's counter:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestFailedConnectFigures: a connect whose SYNs an nftables rule drops
// on the client's OUTPUT hook (the kernel counts each retransmission as
// failed, TcpExtTCPRetransFail) times out. Its syn-sent -> close, the
// alert and the summary agree with the kernel: the local port is the
// socket's, syn_retransmits is total_retrans, the SYNs tried (1 + those)
// are segs_out and what nft dropped; the table read back from the
// recording shows the same port and count.
func TestFailedConnectFigures(t *testing.T) {
	ns := testnet.New(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testnet.Skip(t, "nft (nftables) is not installed: apt-get install nftables")
	}
	nft(t, ns, "table inet out {\n counter syns {}\n chain out {\n  type filter hook output priority 0;\n  tcp dport 9092 counter name syns drop\n }\n}\n")
	file := filepath.Join(t.TempDir(), "trace.st")
	p := start(t, "-o", "json", "--netns", ns.Path(), "--summary", "--fail-after", "1", "-w", file, "--no-snapshot")
	local := timedOutConnect(t, ns, 9092)
	p.waitForIn(t, 10*time.Second, "the failing alert", alertFor("failing", 9092))
	recs := parseJSON(t, p.stop(t))
	dropped := nftPackets(t, ns, "out", "syns")

	var end, alert record
	for _, r := range recs {
		switch {
		case r.str("type") == "transition" && r.str("old_state") == "syn-sent" && r.str("new_state") == "close" && r.num("dport") == 9092:
			end = r
		case r.str("type") == "alert" && r.num("dport") == 9092:
			alert = r
		}
	}
	if end == nil || alert == nil {
		t.Fatalf("no syn-sent -> close or no alert for :9092 in\n%v", recs)
	}
	sum := destOf(lastSummary(t, recs), 9092)
	if sum == nil {
		t.Fatalf("no :9092 in the summary")
	}
	rexmit := int(end.num("syn_retransmits"))
	t.Logf("record: sport %v syn_retransmits %d total_retrans %v segs_out %v; nft dropped %d; alert %q; summary %q",
		end["sport"], rexmit, end["total_retrans"], end["segs_out"], dropped, alert.str("last_cause"), sum.str("last_cause"))
	if int(end.num("sport")) != local {
		t.Errorf("record's sport %v, the socket's %d", end["sport"], local)
	}
	if end.num("total_retrans") < 1 {
		t.Fatalf("the kernel retransmitted no SYN: the test proves nothing")
	}
	if float64(rexmit) != end.num("total_retrans") || float64(1+rexmit) != end.num("segs_out") || 1+rexmit != dropped {
		t.Errorf("syn_retransmits %d, total_retrans %v, segs_out %v, nft dropped %d: want 1 + syn_retransmits SYNs everywhere",
			rexmit, end["total_retrans"], end["segs_out"], dropped)
	}
	// Every SYN was dropped on this host (issue 26): the cause says so.
	cause := fmt.Sprintf("%d SYNs dropped on this host (NETFILTER_DROP, sent)", 1+rexmit)
	for _, d := range []struct {
		what string
		r    record
	}{{"alert", alert}, {"summary", sum}} {
		if int(d.r.num("last_syns")) != 1+rexmit || int(d.r.num("syn_retransmits")) != rexmit || !strings.HasPrefix(d.r.str("last_cause"), cause) {
			t.Errorf("%s: last_syns %v, syn_retransmits %v, last_cause %q; want %d, %d, %q...",
				d.what, d.r["last_syns"], d.r["syn_retransmits"], d.r.str("last_cause"), 1+rexmit, rexmit, cause)
		}
	}

	// The table, from the recording.
	out, _ := readCapture(t, "-n", file)
	want := regexp.MustCompile(fmt.Sprintf(`127\.0\.0\.1:%d +127\.0\.0\.1:9092 +syn-sent -> close .* %d SYN rexmit`, local, rexmit))
	if !want.MatchString(out) {
		t.Errorf("the table read back lacks the attempt from port %d with %d SYN rexmit:\n%s", local, rexmit, out)
	}
}

// echoServer serves, in ns, on a new listener until the test ends: each
// connection gets back what it sent, and is closed once the client
// closed. It returns the port.
func echoServer(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	return ns.Serve(t, "127.0.0.1:0", func(c net.Conn) { io.Copy(c, c); c.Close() })
}

// echo makes, in ns, n connections to port, each sending size bytes and
// reading them back before it closes.
func echo(t *testing.T, ns *testnet.NS, port, n, size int) {
	t.Helper()
	ns.Run(t, func() error {
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return err
			}
			if _, err := c.Write(make([]byte, size)); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
				return err
			}
			c.Close()
		}
		return nil
	})
}

// metric sums the samples of name whose labels include every one given.
func metric(m map[string]float64, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for k, v := range m {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(k, l)
		}
		if all {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// TestDataBytesEverywhere: 20 connections that send nothing and 5 that
// send 1000 bytes each way. The records, the summary's destinations and
// the agent's socktrace_bytes_total count data only: 0 and 5000, not the
// SYN and FINs the kernel's own counters hold.
func TestDataBytesEverywhere(t *testing.T) {
	ns := testnet.New(t)
	empty, full := echoServer(t, ns), echoServer(t, ns)
	_, addr := startAgent(t, "--netns", ns.Path())
	p := start(t, "-o", "json", "--netns", ns.Path(), "--summary", "--no-snapshot")
	echo(t, ns, empty, 20, 0)
	echo(t, ns, full, 5, 1000)
	closes := func(lines []string) bool {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, `"new_state":"close"`) && strings.Contains(l, `"bytes_acked"`) {
				n++
			}
		}
		return n >= 2*25 // both sides of every connection
	}
	p.waitFor(t, "every connection closed", closes)
	m := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	recs := parseJSON(t, p.stop(t))

	for _, c := range []struct {
		port, conns int
		each        float64
	}{{empty, 20, 0}, {full, 5, 1000}} {
		dp := fmt.Sprintf(`dport="%d"`, c.port)
		for _, dir := range []string{"sent", "received"} {
			got, ok := metric(m, "socktrace_bytes_total", dp, `direction="`+dir+`"`)
			if !ok || got != c.each*float64(c.conns) {
				t.Errorf("socktrace_bytes_total{%s,direction=%q} = %v (present %v), want %v", dp, dir, got, ok, c.each*float64(c.conns))
			}
		}
		d := destOf(lastSummary(t, recs), c.port)
		if d == nil || d.num("bytes_acked") != c.each*float64(c.conns) || d.num("bytes_received") != c.each*float64(c.conns) {
			t.Errorf("summary of :%d: %v; want bytes_acked and bytes_received %v", c.port, d, c.each*float64(c.conns))
		}
		n := 0
		for _, r := range recs {
			if r.str("type") != "transition" || r.str("new_state") != "close" || r["bytes_acked"] == nil ||
				(int(r.num("dport")) != c.port && int(r.num("sport")) != c.port) {
				continue
			}
			n++
			if r.num("bytes_acked") != c.each || r.num("bytes_received") != c.each {
				t.Errorf("%s -> close of %v:%v -> %v:%v: bytes_acked %v, bytes_received %v; want %v",
					r.str("old_state"), r["saddr"], r["sport"], r["daddr"], r["dport"], r["bytes_acked"], r["bytes_received"], c.each)
			}
		}
		if n != 2*c.conns {
			t.Errorf(":%d: %d closes with byte counts, want %d", c.port, n, 2*c.conns)
		}
	}
}

// TestAbandonedConnectCause: a client closes its connect after 50ms,
// the SYN unanswered (a full listener drops it). The alert says what was
// seen, the application closing the socket, not why it did.
func TestAbandonedConnectCause(t *testing.T) {
	ns := testnet.New(t)
	port := ns.FullListener(t, 1)
	p := start(t, "-o", "json", "--netns", ns.Path(), "--fail-after", "1", "--no-snapshot")
	ns.Run(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
		if !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(fd)
			return fmt.Errorf("connect to a full listener: %v, want EINPROGRESS", err)
		}
		time.Sleep(50 * time.Millisecond)
		return unix.Close(fd)
	})
	p.waitFor(t, "the failing alert", alertFor("failing", port))
	recs := parseJSON(t, p.stop(t))
	// A poll of the listeners may have seen the drop before the alert:
	// then the cause also points at the listener.
	want := regexp.MustCompile(`^closed by the application after [0-9.]+ms, no reply` +
		fmt.Sprintf(`(; the listener 127\.0\.0\.1:%d \(.+\) is dropping SYNs: accept queue full, 1 dropped)?$`, port))
	for _, r := range recs {
		if r.str("type") == "alert" && int(r.num("dport")) == port {
			if c := r.str("last_cause"); !want.MatchString(c) || r.str("last_outcome") != "aborted" {
				t.Errorf("alert's last_cause %q (outcome %q), want %q (aborted)", c, r.str("last_outcome"), want)
			}
			return
		}
	}
	t.Fatalf("no alert for :%d", port)
}
