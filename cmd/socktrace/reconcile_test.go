package main

// Reconciliation: the live table is checked against the kernel, so that
// sockets whose close was lost (or filtered out in the kernel) do not
// stay "live" for ever.

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// holdOpen makes n established connections in ns and keeps both ends
// open until the test ends: 2n live sockets and a listener.
func holdOpen(t *testing.T, ns *testnet.NS, n int) {
	t.Helper()
	var conns []interface{ Close() error }
	ns.Run(t, func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		conns = append(conns, ln)
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			conns = append(conns, c, s)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
}

// churn makes workers*each connections to port in ns, as fast as it goes.
func churn(t *testing.T, ns *testnet.NS, port, workers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ns.Do(func() error {
				for i := 0; i < each; i++ {
					if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
						c.Close()
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
}

// ssCount counts the full sockets (not time-wait, not request sockets)
// that ss lists in ns.
func ssCount(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "ss", "-tanH", "exclude", "time-wait", "exclude", "syn-recv").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n"))
}

// summaryLive asks a running socktrace for a summary and returns its
// count of live sockets.
func summaryLive(t *testing.T, p *proc) float64 {
	t.Helper()
	before := len(p.output())
	p.cmd.Process.Signal(syscall.SIGUSR1)
	p.waitFor(t, "a summary", func(lines []string) bool {
		for _, l := range lines[before:] {
			if strings.Contains(l, `"type":"summary"`) {
				return true
			}
		}
		return false
	})
	recs := parseJSON(t, p.output()[before:])
	h, _ := lastSummary(t, recs)["history"].(map[string]any)
	return record(h).num("live")
}

// TestReconcileAfterOverload: a burst through a tiny ring buffer loses
// transitions, closes among them; reconciliation closes the sockets the
// kernel no longer has, and the live count comes back to the truth.
func TestReconcileAfterOverload(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	holdOpen(t, ns, 5)
	p := start(t, "-o", "json", "--netns", ns.Path(), "--ring-size", "4K", "--reconcile-every", "2s")
	churn(t, ns, port, 4, 1000)
	p.waitForIn(t, 10*time.Second, "a lost record", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"lost"`) {
				return true
			}
		}
		return false
	})
	p.waitForIn(t, 10*time.Second, "a reconciled record that closed sockets", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"reconciled"`) && !strings.Contains(l, `"closed":0,`) {
				return true
			}
		}
		return false
	})
	// Once a reconciliation after the burst has run, the table is the
	// truth: the accepting listener, and the 5 pairs and their listener.
	// The last connections of the burst are still closing: wait for
	// the namespace to settle to those.
	deadline := time.Now().Add(10 * time.Second)
	var live, want float64
	for time.Now().Before(deadline) {
		if want = float64(ssCount(t, ns)); want == 12 {
			if live = summaryLive(t, p); live == want {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	recs := parseJSON(t, p.stop(t))
	var lost, closed float64
	for _, r := range recs {
		switch r.str("type") {
		case "lost":
			lost += r.num("count")
		case "reconciled":
			closed = r.num("closed_total")
			if r.str("trigger") == "" || r.num("live") < 0 {
				t.Errorf("bad reconciled record %v", r)
			}
		}
	}
	t.Logf("%v transitions lost; reconciliation closed %v sockets whose close was lost; live %v, ss %v", lost, closed, live, want)
	if live != want {
		t.Errorf("live sockets %v after reconciliation, ss counts %v", live, want)
	}
}

// TestReconcileFilteredAndGone: with --state syn-sent the kernel never
// sends an established socket's close, so the table cannot see it end;
// when its namespace goes away, the reconciliation closes it at once,
// not at the next periodic one.
func TestReconcileFilteredAndGone(t *testing.T) {
	ns := testnet.New(t)
	var ln net.Listener
	ns.Run(t, func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	defer ln.Close()
	// Other tests' namespaces come and go while this one runs: only this
	// listener's port is traced, so the reconciliation's count is ours.
	port := ln.Addr().(*net.TCPAddr).Port
	p := start(t, "-o", "json", "--no-snapshot", "--state", "syn-sent", "--dport", fmt.Sprint(port), "--reconcile-every", "4s")
	var c, s net.Conn
	ns.Run(t, func() (err error) {
		if c, err = net.Dial("tcp4", ln.Addr().String()); err != nil {
			return err
		}
		s, err = ln.Accept()
		return err
	})
	ln.Close()
	// (The established transition passes the kernel, not the --state
	// filter of the output.)
	p.waitFor(t, "the connect", countNetns(ns.Inode, 1))
	// Let the first periodic reconciliation (at 4 to 5 s) find where the
	// namespace is, then make it go away before the next (at 8 to 9 s).
	time.Sleep(6 * time.Second)
	c.Close()
	s.Close()
	ns.Close()
	p.waitForIn(t, 15*time.Second, "the namespace's sockets closed by reconciliation", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"reconciled"`) && strings.Contains(l, `"trigger":"netns-gone"`) && strings.Contains(l, `"closed":1,`) {
				return true
			}
		}
		return false
	})
	p.stop(t)
}
