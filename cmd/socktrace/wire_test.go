package main

// What happened on the wire, end to end: tcp_info in the listing (-i,
// like ss -i), SYN retransmits and resets in the trace and the agent.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// TestOnceInfo: --once -i lists each connected socket's tcp_info; the
// counters agree with ss -ti for the same socket, and -m gives ss -m's
// skmem.
func TestOnceInfo(t *testing.T) {
	ns := testnet.New(t)
	const n = 300000
	var port int
	var conns []net.Conn
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		t.Cleanup(func() { ln.Close() })
		port = ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		conns = append(conns, c, s)
		go io.CopyN(io.Discard, s, n)
		_, err = c.Write(make([]byte, n))
		return err
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	time.Sleep(200 * time.Millisecond) // everything acknowledged
	out, err := exec.Command(socktraceBin(t), "--once", "-i", "-m", "--netns", ns.Path(), "-o", "json",
		fmt.Sprintf("dport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("socktrace --once -i: %v", err)
	}
	var rec struct {
		TCPInfo map[string]float64 `json:"tcp_info"`
		SkMem   map[string]float64 `json:"skmem"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &rec); err != nil {
		t.Fatalf("not one JSON record: %v\n%s", err, out)
	}
	if rec.TCPInfo["bytes_acked"] < n || rec.TCPInfo["rtt_us"] <= 0 || rec.TCPInfo["snd_cwnd"] <= 0 {
		t.Errorf("tcp_info %v: want bytes_acked >= %d, an rtt and a cwnd", rec.TCPInfo, n)
	}
	if _, ok := rec.SkMem["rcvbuf"]; !ok {
		t.Errorf("no skmem with -m: %s", out)
	}
	// ss -ti says the same of the same socket (nothing moved since).
	ss, err := exec.Command("nsenter", "--net="+ns.Path(), "ss", "-tniH", "dport", "=", ":"+strconv.Itoa(port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	m := regexp.MustCompile(`bytes_acked:(\d+)`).FindStringSubmatch(string(ss))
	if m == nil {
		t.Fatalf("no bytes_acked in ss -ti:\n%s", ss)
	}
	if got, _ := strconv.ParseFloat(m[1], 64); got != rec.TCPInfo["bytes_acked"] {
		t.Errorf("bytes_acked: ss %v, socktrace %v", got, rec.TCPInfo["bytes_acked"])
	}
	// The table spells it as ss -i does.
	tbl, err := exec.Command(socktraceBin(t), "--once", "-i", "-n", "--netns", ns.Path(), fmt.Sprintf("dport = :%d", port)).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"rtt:", "cwnd:", "bytes_acked:" + m[1]} {
		if !strings.Contains(string(tbl), w) {
			t.Errorf("--once -i table lacks %q:\n%s", w, tbl)
		}
	}
}

// TestStoryWire: on the broker story, each failed attempt says how many
// SYNs went out and that they were dropped on this host (the story's
// rule, on the input hook); a refused one that an RST
// came back; a healthy connection's close its bytes and RTT (-i).
func TestStoryWire(t *testing.T) {
	s := newStory(t)
	p := start(t, "-n", "-i", "--netns", s.ns.Path(), "--no-snapshot")
	startClient(t, s.ns, s.dropped, s.shut, s.good)
	// TCP_SYNCNT 1 in the client bounds the attempt to about 3 s; with
	// the 1 s linear timeouts of 6.5+ that is 2 retransmits, else 1.
	// The story's rule drops them on the input hook: on this host.
	timedOut := regexp.MustCompile(`syn-sent -> close .* ETIMEDOUT [12] SYN rexmit [23] SYNs dropped on this host \(NETFILTER_DROP, sent\)`)
	p.waitForIn(t, 15*time.Second, "a timed-out attempt with its SYN retransmits", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, ":9092") && timedOut.MatchString(l) {
				return true
			}
		}
		return false
	})
	p.waitFor(t, "a refused attempt with its RST", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, fmt.Sprintf(":%d", s.closed)) && strings.Contains(l, "ECONNREFUSED RST rcvd") {
				return true
			}
		}
		return false
	})
	// (SYN and FIN count in the bytes acknowledged, as in ss -i.)
	moved := regexp.MustCompile(`\d+B/\d+B \d+(\.\d)?(us|ms) rtt`)
	p.waitFor(t, "a healthy close with bytes and RTT", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, fmt.Sprintf(":%d", s.healthy)) && strings.Contains(l, "-> close") && moved.MatchString(l) {
				return true
			}
		}
		return false
	})
	p.stop(t)
}
