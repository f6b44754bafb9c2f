package main

// A short soak of the agent: churn with repeated overload bursts through
// a small ring buffer. After each burst, within one reconciliation, the
// live-socket gauge equals what ss counts; the connect counters equal
// what the load made; resident memory stays flat.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// ssAll counts every TCP socket ss lists in ns, time-wait included.
func ssAll(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns.Path(), "ss", "-tanH").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0
	}
	return len(strings.Split(s, "\n"))
}

// gauges sums socktrace_sockets over the states, and the connect
// attempts to port over the outcomes.
func gauges(t *testing.T, addr string, port int) (sockets, attempts float64, m map[string]float64) {
	t.Helper()
	m = scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	for k, v := range m {
		if strings.HasPrefix(k, "socktrace_sockets{") {
			sockets += v
		}
		if strings.HasPrefix(k, "socktrace_connect_attempts_total{") && strings.Contains(k, fmt.Sprintf(`dport="%d"`, port)) {
			attempts += v
		}
	}
	return sockets, attempts, m
}

func rssKiB(t *testing.T, pid int) int { return procStatusKiB(t, pid, "VmRSS:") }

// procStatusKiB is a size line of /proc/PID/status (VmRSS:, VmHWM:...), in KiB.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == field {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// median3 is the median of three values: one garbage-collector spike
// does not move it.
func median3(xs []float64) float64 {
	a, b, c := xs[0], xs[1], xs[2]
	return max(min(a, b), min(max(a, b), c))
}

// slope is the least-squares slope of ys over 0, 1, 2...
func slope(ys []float64) float64 {
	n := float64(len(ys))
	var sx, sy, sxy, sxx float64
	for i, y := range ys {
		x := float64(i)
		sx, sy, sxy, sxx = sx+x, sy+y, sxy+x*y, sxx+x*x
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func TestAgentSoak(t *testing.T) {
	ns := testnet.New(t)
	// Time-wait sockets are the kernel's, not socktrace's: bound them,
	// so that what the dumps hold stops growing.
	if out, err := exec.Command("nsenter", "--net="+ns.Path(), "sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=1000").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v\n%s", err, out)
	}
	port := acceptAndClose(t, ns)
	holdOpen(t, ns, 20)
	const reconcile = 2 * time.Second
	// A small closed history: it fills in the first burst, so what grows
	// after is a leak, not the history reaching its cap.
	p, addr := startAgent(t, "--netns", ns.Path(), "--ring-size", "16K", "--reconcile-every", reconcile.String(), "--history", "500")
	pid := p.cmd.Process.Pid

	// A steady trickle of connects, between and during the bursts.
	var made, failed atomic.Int64
	// dial connects once; it runs on a thread inside the namespace.
	dial := func() {
		if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			made.Add(1)
			c.Close()
		} else {
			failed.Add(1)
		}
	}
	// The trickle pauses while a burst's result is checked: the count
	// is compared with ss's at a moment when both can be exact.
	stop := make(chan struct{})
	var pause sync.Mutex
	var trickle sync.WaitGroup
	trickle.Add(1)
	go func() {
		defer trickle.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				pause.Lock()
				ns.Do(func() error { dial(); return nil })
				pause.Unlock()
			}
		}
	}()

	const bursts, workers, each = 8, 4, 600
	var rss []float64
	var lostBefore float64
	for b := 0; b < bursts; b++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns.Do(func() error {
					for i := 0; i < each; i++ {
						dial()
					}
					return nil
				})
			}()
		}
		wg.Wait()
		pause.Lock()
		// Within one reconciliation (and the time the last closes of the
		// burst take), the gauge is what ss counts.
		deadline := time.Now().Add(2*reconcile + 3*time.Second)
		var sockets, ss float64
		var m map[string]float64
		for {
			sockets, _, m = gauges(t, addr, port)
			ss = float64(ssAll(t, ns))
			if sockets == ss || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		lost := m["socktrace_transitions_lost_total"]
		t.Logf("burst %d: %d connects so far, %v transitions lost in it; socktrace_sockets %v, ss %v; reconciled: %v closed, %v added; RSS %d KiB",
			b+1, made.Load(), lost-lostBefore, sockets, ss, m[`socktrace_reconciled_sockets_total{kind="closed"}`],
			m[`socktrace_reconciled_sockets_total{kind="added"}`], rssKiB(t, pid))
		if sockets != ss {
			t.Errorf("burst %d: socktrace_sockets sums to %v, ss counts %v", b+1, sockets, ss)
		}
		lostBefore = lost
		rss = append(rss, float64(rssKiB(t, pid)))
		pause.Unlock()
	}
	close(stop)
	trickle.Wait()
	if lostBefore == 0 {
		t.Errorf("no transition lost: the bursts did not overload the 16K ring, the soak proves less than it says")
	}

	// Every connect made is counted, none twice, lost transitions or not.
	time.Sleep(200 * time.Millisecond)
	_, attempts, _ := gauges(t, addr, port)
	checkConnectsCounted(t, attempts, made.Load(), failed.Load())
	// Memory: flat after the first burst (maps and caches warmed up).
	// RSS moves by a MiB or two with the garbage collector's cycles, so
	// the test compares the last bursts with the first ones (medians of
	// three, as one cycle can add a few MiB for a moment: 37,480 KiB
	// between 35,092 and 33,628 once): a leak of the sockets of a burst
	// (a few thousand rows) is several MiB every burst.
	s := slope(rss[1:])
	early, late := median3(rss[1:4]), median3(rss[len(rss)-3:])
	t.Logf("RSS after each burst (KiB): %v; slope after the first: %.0f KiB per burst; median of bursts 2-4 %.0f, of the last 3 %.0f",
		rss, s, early, late)
	if late-early > 3<<10 {
		t.Errorf("resident memory grew %.0f KiB from bursts 2-4 to the last 3", late-early)
	}
	p.stop(t)
}

// checkConnectsCounted: every connect made is counted by the kernel's
// destination counters, lost transitions or not. A few may be counted
// twice: a primary program preempted in process context before its
// backup ran can see its entry pushed off the per-CPU handled stack by
// other tasks' transitions, and the backup sends it again (a known race
// of bpf/backup.h, rare: at most a few in ten thousand under these
// overload bursts; its fix, a per-task key, is not done). More than that,
// or fewer than made, fails.
func checkConnectsCounted(t *testing.T, attempts float64, made, failed int64) {
	t.Helper()
	extra := attempts - float64(made)
	if failed != 0 || extra < 0 || extra > float64(max(1, made/1000)) {
		t.Errorf("connect attempts counted %v; the load made %d (and %d failed to connect)", attempts, made, failed)
	} else if extra > 0 {
		t.Logf("connect attempts counted %v; the load made %d: %v counted twice (the backup's known race)", attempts, made, extra)
	}
}
