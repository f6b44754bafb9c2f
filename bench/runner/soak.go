package main

// The soak scenario: socktrace agent on one namespace for a long run of
// cycles (a steady churn, an overload burst through a small ring buffer,
// a quiet pause), checking in each pause that the live-socket gauge is
// what ss counts, that the connect counters are what the load made, and
// how resident memory moves.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tcpTimeWait is how long Linux keeps a time-wait socket (TCP_TIMEWAIT_LEN,
// not tunable). They go away without a state transition, so the gauge
// (which takes them from the last dump) is only exact while none expire:
// the cycle divides it, so that those expiring in a pause were born in
// the pause two cycles before, when there were none.
const tcpTimeWait = 60 * time.Second

// soakIdle is how long an agent at its defaults is left idle after it is
// ready, on the soak's namespace before its load, before its VmRSS is
// read.
const soakIdle = 5 * time.Second

type soakConfig struct {
	duration, steady, burst, pause, reconcile time.Duration
	rate                                      float64
	ring                                      string
	history                                   int
	// otelcol: -soak-otlp, the collector to run a second soak against
	// (""): none); otlpArgs: the agent's OTLP flags in that soak.
	otelcol      string
	otlpInterval time.Duration
	otlpArgs     []string
}

func (s soakConfig) period() time.Duration { return s.steady + s.burst + s.pause }

// cycles is how many cycles fit in the duration (at least one).
func (s soakConfig) cycles() int {
	n := int(math.Round(float64(s.duration) / float64(s.period())))
	if n < 1 {
		n = 1
	}
	return n
}

// soakRun is one run of the load generator in a cycle.
type soakRun struct {
	Conns, Failed, ConnectFailed int64
	Rate                         float64
	Err                          string
}

type soakCycle struct {
	Cycle int `json:"cycle"`
	// Start: seconds from the soak's start to the cycle's; Check: to the
	// end of its checks (when the RSS was read).
	Start, Check  float64
	Steady, Burst soakRun
	// Made, Failed: connections the load made (and failed) so far.
	Made, Failed int64
	// Of this cycle: transitions received, lost, skipped; reconciliations
	// and what they corrected.
	Transitions, Lost, Skipped       float64
	Reconciles                       float64
	RecClosed, RecAdded, RecChanged  float64
	Expected                         int64 // transitions the cycle's load made
	Gauge, SS, SSTimeWait, SSAtStart int64
	GaugeOK                          bool
	MatchAfter                       float64 // seconds from the end of the load to the match
	MatchRecs                        float64 // reconciliations from the end of the load to the match
	Tries                            int
	Attempts                         float64 // socktrace_connect_attempts_total to the server, all outcomes
	Established                      float64
	CountersOK                       bool
	CountersAfter                    float64
	RSS                              int64 // VmRSS, KiB
	PromRSS                          int64 // process_resident_memory_bytes, KiB
	Late                             float64
	Err                              string
}

type soakResult struct {
	Cfg                               soakConfig
	Workers                           int
	AgentArgs                         []string
	Netns                             string
	Wall                              time.Duration
	Cycles                            []soakCycle
	Made, Failed                      int64
	Runs                              int
	Transitions, Lost, Skipped        float64
	Reconciles                        float64
	RecClosed, RecAdded, RecChanged   float64
	CPU                               float64 // agent user+system seconds over the soak
	HWM                               int64   // agent VmHWM at the end, KiB
	IdleRSS                           int64   // VmRSS of an agent at its defaults, idle, soakIdle after it was ready, KiB
	TCP                               map[string]int64
	Triggers                          map[string]int // reconciliations by trigger (agent's stdout)
	Err                               string
	OTLPExported, OTLPDropped         [2]float64 // logs, metrics (with -soak-otlp)
	agentStderr                       string
	failedGauge, failedCounters, late []int
}

// metrics is a scrape: sample (name and labels, as written) -> value.
type metrics map[string]float64

func (m metrics) sum(prefix string, match func(labels string) bool) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix+"{") && (match == nil || match(k[len(prefix):])) {
			s += v
		}
	}
	return s
}

func scrapeMetrics(cl *http.Client, url string) (metrics, error) {
	resp, err := cl.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample line %q", l)
		}
		m[l[:i]] = v
	}
	return m, sc.Err()
}

// ssCount counts every TCP socket ss lists in the namespace (time-wait
// and syn-recv included), and the time-wait ones.
func ssCount(c *config, ns string) (all, tw int64, err error) {
	out, err := exec.Command("nsenter", "--net="+ns, c.ss, "-tanH").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ss: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		all++
		if strings.HasPrefix(l, "TIME-WAIT") {
			tw++
		}
	}
	return all, tw, nil
}

func freeLocalPort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// soakLoad runs one churn in the namespace and waits for its report.
func soakLoad(c *config, ns string, rate float64, dur time.Duration) soakRun {
	var r soakRun
	lg, err := startLoadgen(c.loadgen, "churn", "-netns", ns, "-wait", "-workers", strconv.Itoa(c.workers),
		"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-duration", dur.String())
	if err != nil {
		r.Err = err.Error()
		return r
	}
	d, err := lg.run()
	r.Conns, r.Failed, r.ConnectFailed, r.Rate = d.Connections, d.Failed, d.ConnectFailed, d.Rate
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

func soak(c *config) *soakResult {
	s := c.soak
	res := &soakResult{Cfg: s, Workers: c.workers, Triggers: map[string]int{}}
	holder, err := startLoadgen(c.loadgen, "netns")
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer holder.close()
	ns := holder.ready.Netns
	res.Netns = ns
	if res.IdleRSS, err = idleAgent(c, ns); err != nil {
		logf("soak: idle agent: %v", err)
	} else {
		logf("soak: agent at its defaults, idle %s after ready: VmRSS %d KiB", soakIdle, res.IdleRSS)
	}
	port, err := freeLocalPort()
	if err != nil {
		res.Err = err.Error()
		return res
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	base := filepath.Join(c.work, fmt.Sprintf("agent-%d", time.Now().UnixNano()))
	outPath, errPath, rf := base+".out", base+".err", base+".ready"
	defer os.Remove(outPath)
	defer os.Remove(errPath)
	defer os.Remove(rf)
	res.AgentArgs = []string{"agent", "--listen", listen, "--netns", ns, "--ring-size", s.ring,
		"--reconcile-every", s.reconcile.String(), "--history", strconv.Itoa(s.history)}
	res.AgentArgs = append(res.AgentArgs, s.otlpArgs...)
	outF, _ := os.Create(outPath)
	errF, _ := os.Create(errPath)
	cmd := exec.Command(c.socktrace, append(res.AgentArgs, "--ready-file", rf)...)
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = outF, errF, sysProcAttr()
	err = cmd.Start()
	outF.Close()
	errF.Close()
	if err != nil {
		res.Err = err.Error()
		return res
	}
	pid := cmd.Process.Pid
	agentErr := func() string { b, _ := os.ReadFile(errPath); return tail(string(b), 600) }
	stopped := false
	defer func() {
		if !stopped {
			stopProc(cmd, syscall.SIGKILL, 5*time.Second)
		}
	}()
	cl := &http.Client{Timeout: 15 * time.Second}
	url := "http://" + listen
	// Attached (the ready file) and reading events (/healthz).
	for launched := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(rf); err == nil {
			if resp, err := cl.Get(url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if !alive(pid) || time.Since(launched) > 60*time.Second {
			res.Err = "the agent did not start: " + agentErr()
			return res
		}
	}
	m0, err := scrapeMetrics(cl, url+"/metrics")
	if err != nil {
		res.Err = err.Error()
		return res
	}
	server := func(labels string) bool {
		return strings.Contains(labels, `daddr="`+holder.ready.Addr+`"`) && strings.Contains(labels, `dport="`+strconv.Itoa(holder.ready.Port)+`"`)
	}
	established := func(labels string) bool { return server(labels) && strings.Contains(labels, `outcome="established"`) }
	gauge := func(m metrics) int64 { return int64(m.sum("socktrace_sockets", nil)) }
	recs := func(m metrics) float64 { return m["socktrace_reconciliations_total"] }

	cpu0 := schedCPU(pid)
	start := time.Now()
	prev := m0
	n := s.cycles()
	logf("soak: %d cycles of %s (%s at %.0f conn/s, %s as fast as it goes, %s quiet), agent %s", n, s.period(), s.steady, s.rate, s.burst, s.pause, strings.Join(res.AgentArgs, " "))
	for k := 0; k < n; k++ {
		cy := soakCycle{Cycle: k + 1}
		at := start.Add(time.Duration(k) * s.period())
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else {
			cy.Late = -d.Seconds()
		}
		cy.Start = time.Since(start).Seconds()
		cy.Steady = soakLoad(c, ns, s.rate, s.steady)
		cy.Burst = soakLoad(c, ns, 0, s.burst)
		loadEnd := time.Now()
		res.Runs += 2
		for _, r := range []soakRun{cy.Steady, cy.Burst} {
			res.Made += r.Conns
			res.Failed += r.Failed
			if r.Err != "" && cy.Err == "" {
				cy.Err = "load: " + r.Err
			}
		}
		cy.Made, cy.Failed = res.Made, res.Failed
		cy.Expected = perConn*(cy.Steady.Conns+cy.Burst.Conns) + 2*listenerTransitions
		// The pause: the load is over (every connection closed, both
		// listeners too). Compare the gauge with ss at the same moment:
		// a scrape, ss, a scrape, and both scrapes the same (no
		// reconciliation in between); for up to two reconciliations.
		deadline := loadEnd.Add(2*s.reconcile + time.Second)
		var last metrics
		recs0 := -1.0
		for try := 1; ; try++ {
			cy.Tries = try
			m1, err1 := scrapeMetrics(cl, url+"/metrics")
			all, tw, errSS := ssCount(c, ns)
			m2, err2 := scrapeMetrics(cl, url+"/metrics")
			if err := firstErr(err1, errSS, err2); err != nil {
				cy.Err = err.Error()
				if !alive(pid) {
					cy.Err = "the agent exited: " + agentErr()
				}
				break
			}
			last = m2
			if recs0 < 0 {
				recs0 = recs(m1)
				cy.SSAtStart = all
			}
			cy.Gauge, cy.SS, cy.SSTimeWait = gauge(m2), all, tw
			stable := recs(m1) == recs(m2) && gauge(m1) == gauge(m2)
			if !cy.GaugeOK && stable && cy.Gauge == cy.SS {
				cy.GaugeOK, cy.MatchAfter, cy.MatchRecs = true, time.Since(loadEnd).Seconds(), recs(m2)-recs0
			}
			want := float64(res.Made + res.Failed)
			cy.Attempts, cy.Established = m2.sum("socktrace_connect_attempts_total", server), m2.sum("socktrace_connect_attempts_total", established)
			if !cy.CountersOK && cy.Attempts == want {
				cy.CountersOK, cy.CountersAfter = true, time.Since(loadEnd).Seconds()
			}
			if cy.GaugeOK && cy.CountersOK || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		cy.RSS = statusKiB(pid, "VmRSS")
		cy.Check = time.Since(start).Seconds()
		if last != nil {
			cy.PromRSS = int64(last["process_resident_memory_bytes"] / 1024)
			cy.Transitions = last["socktrace_transitions_total"] - prev["socktrace_transitions_total"]
			cy.Lost = last["socktrace_transitions_lost_total"] - prev["socktrace_transitions_lost_total"]
			cy.Skipped = last["socktrace_transitions_skipped_total"] - prev["socktrace_transitions_skipped_total"]
			cy.Reconciles = recs(last) - recs(prev)
			for _, kv := range []struct {
				p    *float64
				kind string
			}{{&cy.RecClosed, "closed"}, {&cy.RecAdded, "added"}, {&cy.RecChanged, "changed"}} {
				key := `socktrace_reconciled_sockets_total{kind="` + kv.kind + `"}`
				*kv.p = last[key] - prev[key]
			}
			prev = last
		}
		if !cy.GaugeOK {
			res.failedGauge = append(res.failedGauge, cy.Cycle)
		}
		if !cy.CountersOK {
			res.failedCounters = append(res.failedCounters, cy.Cycle)
		}
		if cy.Late > 1 {
			res.late = append(res.late, cy.Cycle)
		}
		logf("soak cycle %d/%d at %4.0fs: made %d+%d (%.0f, %.0f conn/s) so far %d; lost %.0f skipped %.0f; sockets %d ss %d (tw %d) %v after %.1fs/%.0f rec; attempts %.0f/%d %v; VmRSS %d KiB (prom %d) %s",
			cy.Cycle, n, cy.Start, cy.Steady.Conns, cy.Burst.Conns, cy.Steady.Rate, cy.Burst.Rate, res.Made, cy.Lost, cy.Skipped,
			cy.Gauge, cy.SS, cy.SSTimeWait, cy.GaugeOK, cy.MatchAfter, cy.MatchRecs, cy.Attempts, res.Made+res.Failed, cy.CountersOK, cy.RSS, cy.PromRSS, cy.Err)
		res.Cycles = append(res.Cycles, cy)
		if cy.Err != "" && !alive(pid) {
			res.Err = cy.Err
			break
		}
	}
	// The rest of the last pause, so that every cycle lasts as long.
	if d := time.Until(start.Add(time.Duration(len(res.Cycles)) * s.period())); d > 0 && res.Err == "" {
		time.Sleep(d)
	}
	if m, err := scrapeMetrics(cl, url+"/metrics"); err == nil {
		prev = m
	}
	res.Wall = time.Since(start)
	res.Transitions = prev["socktrace_transitions_total"] - m0["socktrace_transitions_total"]
	res.Lost = prev["socktrace_transitions_lost_total"] - m0["socktrace_transitions_lost_total"]
	res.Skipped = prev["socktrace_transitions_skipped_total"] - m0["socktrace_transitions_skipped_total"]
	res.Reconciles = recs(prev) - recs(m0)
	res.RecClosed = prev[`socktrace_reconciled_sockets_total{kind="closed"}`] - m0[`socktrace_reconciled_sockets_total{kind="closed"}`]
	res.RecAdded = prev[`socktrace_reconciled_sockets_total{kind="added"}`] - m0[`socktrace_reconciled_sockets_total{kind="added"}`]
	res.RecChanged = prev[`socktrace_reconciled_sockets_total{kind="changed"}`] - m0[`socktrace_reconciled_sockets_total{kind="changed"}`]
	res.HWM = statusKiB(pid, "VmHWM")
	for i, sig := range []string{"logs", "metrics"} {
		res.OTLPExported[i] = prev[`socktrace_otlp_exported_total{signal="`+sig+`"}`]
		res.OTLPDropped[i] = prev[`socktrace_otlp_dropped_total{signal="`+sig+`"}`]
	}
	res.TCP = namespaceTCP(ns)
	u, err := stopProc(cmd, syscall.SIGINT, 30*time.Second)
	stopped = true
	res.CPU = (u.CPU - cpu0).Seconds()
	if err != nil && res.Err == "" {
		res.Err = err.Error()
	}
	res.agentStderr = agentErr()
	scanLines(outPath, func(l []byte) {
		var r struct {
			Type    string `json:"type"`
			Trigger string `json:"trigger"`
		}
		if json.Unmarshal(l, &r) == nil && r.Type == "reconciled" {
			res.Triggers[r.Trigger]++
		}
	})
	return res
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// namespaceTCP reads the namespace's TCP counters that tell connections
// did not go the usual way (as the load generator reports them).
func namespaceTCP(ns string) map[string]int64 {
	want := map[string]bool{"RetransSegs": true, "AttemptFails": true, "EstabResets": true, "OutRsts": true,
		"TCPTimeouts": true, "ListenOverflows": true, "ListenDrops": true, "TCPAbortOnClose": true,
		"TCPAbortOnData": true, "TCPBacklogDrop": true, "TCPTimeWaitOverflow": true, "TCPSynRetrans": true,
		"TCPReqQFullDrop": true, "TWKilled": true, "TWRecycled": true}
	out := map[string]int64{}
	b, err := exec.Command("nsenter", "--net="+ns, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return out
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := 1; j < len(keys) && j < len(vals); j++ {
			if want[keys[j]] {
				if n, _ := strconv.ParseInt(vals[j], 10, 64); n != 0 {
					out[keys[j]] = n
				}
			}
		}
	}
	return out
}

// idleAgent runs socktrace agent at its defaults (but for where it
// listens, and the namespace) and returns its VmRSS, KiB, soakIdle after
// it was ready.
func idleAgent(c *config, ns string) (int64, error) {
	port, err := freeLocalPort()
	if err != nil {
		return 0, err
	}
	rf := filepath.Join(c.work, fmt.Sprintf("idle-%d.ready", time.Now().UnixNano()))
	defer os.Remove(rf)
	cmd := exec.Command(c.socktrace, "agent", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--netns", ns, "--ready-file", rf)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = io.Discard, &stderr, sysProcAttr()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer stopProc(cmd, syscall.SIGINT, 10*time.Second)
	for launched := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(rf); err == nil {
			break
		}
		if !alive(cmd.Process.Pid) || time.Since(launched) > 60*time.Second {
			return 0, fmt.Errorf("the agent did not start: %s", tail(stderr.String(), 600))
		}
	}
	time.Sleep(soakIdle)
	return statusKiB(cmd.Process.Pid, "VmRSS"), nil
}

// maxRSS is the highest VmRSS read after a cycle, KiB.
func (r *soakResult) maxRSS() int64 {
	var m int64
	for _, cy := range r.Cycles {
		m = max(m, cy.RSS)
	}
	return m
}

// rssSlope is the least-squares slope, in KiB per hour, of the RSS over
// the time of its readings, for the cycles after the first (the first
// warms up the tables and caches).
func (r *soakResult) rssSlope() float64 {
	if len(r.Cycles) < 3 {
		return math.NaN()
	}
	var sx, sy, sxy, sxx, n float64
	for _, cy := range r.Cycles[1:] {
		x, y := cy.Check/3600, float64(cy.RSS)
		sx, sy, sxy, sxx, n = sx+x, sy+y, sxy+x*y, sxx+x*x, n+1
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func (r *soakResult) passed() bool {
	return r.Err == "" && len(r.Cycles) > 0 && len(r.failedGauge) == 0 && len(r.failedCounters) == 0
}

func cycleList(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ", ")
}

func okMark(ok bool) string {
	if ok {
		return "yes"
	}
	return "**NO**"
}

// markdown writes the soak's section of the report.
func (r *soakResult) markdown(w func(string, ...any)) {
	s := r.Cfg
	w("## Soak: the agent under churn with overload bursts\n\n")
	w("`socktrace %s` (and `--ready-file`; its NDJSON stdout to a file on tmpfs) on one network namespace (made by `bench/loadgen netns`, whose churn runs join it with `-netns`), for %s (-soak-duration) in cycles of %s: a steady churn at %.0f connections/s for %s, an overload burst as fast as %d workers go for %s (through a %s ring buffer, so that transitions are lost), then %s quiet (-soak-steady, -soak-rate, -soak-burst, -soak-pause, -workers). ",
		strings.Join(r.AgentArgs, " "), s.duration, s.period(), s.rate, s.steady, r.Workers, s.burst, s.ring, s.pause)
	w("In each pause, once every connection of the cycle has closed: (1) the sum of `socktrace_sockets` against `nsenter --net=NS ss -tanH` (every TCP socket of the namespace, time-wait included), at the same moment (a scrape, ss, a scrape; a match counts only if both scrapes agree, with no reconciliation in between), retried every 0.25 s for two reconciliation intervals (%s) from the end of the load; (2) the sum of `socktrace_connect_attempts_total{daddr=\"127.77.0.1\",dport=\"7777\"}` over outcomes and owners against the connections the load generator made so far (its done messages, failed ones included); (3) the agent's VmRSS (/proc/PID/status) and its `process_resident_memory_bytes`. ", 2*s.reconcile)
	w("Time-wait sockets leave without a state transition, so the gauge (which holds those of the last dump) is exact only while none expire: the cycle lasts a divisor of Linux's fixed 60 s time-wait, so that those expiring during a pause were born in the pause two cycles before (there are none, but for the last connections of a burst, which the timer wheel's 2 s granularity can carry into the first seconds of the pause).")
	if tcpTimeWait%s.period() != 0 {
		w(" **This run's cycle (%s) does not divide 60 s: time-wait sockets expire during the pauses, and the gauge can differ from ss through no fault of socktrace.**", s.period())
	}
	w("\n\n")
	if r.Err != "" {
		w("**The soak did not complete: %s**\n\n", r.Err)
	}
	if len(r.Cycles) == 0 {
		return
	}
	var verdict []string
	if len(r.failedGauge) > 0 {
		verdict = append(verdict, fmt.Sprintf("the gauge did not equal ss in cycle(s) %s", cycleList(r.failedGauge)))
	}
	if len(r.failedCounters) > 0 {
		verdict = append(verdict, fmt.Sprintf("the connect counters did not equal the load in cycle(s) %s", cycleList(r.failedCounters)))
	}
	if r.Err != "" {
		verdict = append(verdict, "the soak did not complete")
	}
	if len(verdict) == 0 {
		w("**All checks passed**: in all %d cycles the gauge equalled ss and the counters equalled the load.\n\n", len(r.Cycles))
	} else {
		w("**CHECKS FAILED: %s.**\n\n", strings.Join(verdict, "; "))
	}
	if r.Lost == 0 {
		w("**Warning: no transition was lost: the bursts did not overload the ring, and the soak proves less than it says.**\n\n")
	}
	if r.Failed > 0 {
		w("**Warning: %s connections failed** (they count as attempts; their transitions are not exactly known).\n\n", thousands(float64(r.Failed)))
	}
	if len(r.late) > 0 {
		w("Note: cycle(s) %s started over a second late (the previous one overran): the time-wait alignment did not hold for them.\n\n", cycleList(r.late))
	}
	first, lastC := r.Cycles[0], r.Cycles[len(r.Cycles)-1]
	expected := int64(0)
	for _, cy := range r.Cycles {
		expected += cy.Expected
	}
	var trig []string
	for k, v := range r.Triggers {
		trig = append(trig, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(trig)
	slope := r.rssSlope()
	w("| | |\n|---|---|\n")
	w("| duration | %s (%d cycles of %s) |\n", r.Wall.Round(time.Second), len(r.Cycles), s.period())
	w("| connections made | %s (%s failed), in %d load runs |\n", thousands(float64(r.Made)), thousands(float64(r.Failed)), r.Runs)
	w("| transitions the load made (%d a connection, 2 a listener) | %s |\n", perConn, thousands(float64(expected)))
	w("| transitions received / lost (ring full) / skipped (by the kernel) | %s / **%s** / %s (received + lost + skipped − made: %s) |\n",
		thousands(r.Transitions), thousands(r.Lost), thousands(r.Skipped), thousands(r.Transitions+r.Lost+r.Skipped-float64(expected)))
	w("| reconciliations | %s (%s); they closed %s sockets, added %s, changed %s |\n", thousands(r.Reconciles), strings.Join(trig, ", "),
		thousands(r.RecClosed), thousands(r.RecAdded), thousands(r.RecChanged))
	w("| gauge = ss | %d of %d cycles |\n", len(r.Cycles)-len(r.failedGauge), len(r.Cycles))
	w("| connect counters = load | %d of %d cycles |\n", len(r.Cycles)-len(r.failedCounters), len(r.Cycles))
	w("| agent CPU | %.2f s user+system, %s s per million transitions received |\n", r.CPU, f2(r.CPU/(r.Transitions/1e6)))
	w("| VmRSS | an agent at its defaults, idle on the namespace %s after ready: %s MiB; the soak's: %s MiB after cycle 1, %s MiB after cycle %d, highest %s MiB; VmHWM %s MiB at the end |\n", soakIdle, mib(float64(r.IdleRSS)), mib(float64(first.RSS)), mib(float64(lastC.RSS)), lastC.Cycle, mib(float64(r.maxRSS())), mib(float64(r.HWM)))
	span := 0.0
	if len(r.Cycles) > 1 {
		span = (lastC.Check - r.Cycles[1].Check) / 60
	}
	w("| RSS slope (least squares over cycles 2–%d, %.1f minutes) | %s KiB per hour (first %s MiB, last %s MiB; over a few minutes the garbage collector's swings of a few MiB dominate it) |\n",
		lastC.Cycle, span, f0(slope), mib(float64(first.RSS)), mib(float64(lastC.RSS)))
	if len(r.TCP) > 0 {
		var kv []string
		for k, v := range r.TCP {
			kv = append(kv, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(kv)
		w("| the namespace's TCP counters at the end (non-zero) | %s |\n", strings.Join(kv, ", "))
	}
	w("\n")
	w("Per cycle (*at*: seconds from the start to the checks; *lost*, *skipped*, *reconciled*: in the cycle; *gauge* and *ss*: at the match, or at the last try; *ss at pause*: ss's count at the first try; *matched after*: seconds from the end of the load, and reconciliations in between; *attempts*: counted by socktrace, against the connections made so far):\n\n")
	w("| cycle | at s | steady conns (conn/s) | burst conns (conn/s) | made so far | lost | skipped | reconciled closed / added / changed | gauge | ss (time-wait) | ss at pause | gauge = ss | matched after | attempts | made so far (+failed) | counters = load | VmRSS MiB | process_resident_memory MiB | error |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, cy := range r.Cycles {
		after := "-"
		if cy.GaugeOK {
			after = fmt.Sprintf("%.1f s, %.0f rec.", cy.MatchAfter, cy.MatchRecs)
		}
		w("| %d | %.0f | %s (%s) | %s (%s) | %s | %s | %s | %s / %s / %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			cy.Cycle, cy.Check, thousands(float64(cy.Steady.Conns)), thousands(cy.Steady.Rate), thousands(float64(cy.Burst.Conns)), thousands(cy.Burst.Rate),
			thousands(float64(cy.Made)), thousands(cy.Lost), thousands(cy.Skipped), thousands(cy.RecClosed), thousands(cy.RecAdded), thousands(cy.RecChanged),
			thousands(float64(cy.Gauge)), thousands(float64(cy.SS)), thousands(float64(cy.SSTimeWait)), thousands(float64(cy.SSAtStart)), okMark(cy.GaugeOK), after,
			thousands(cy.Attempts), thousands(float64(cy.Made+cy.Failed)), okMark(cy.CountersOK), mib(float64(cy.RSS)), mib(float64(cy.PromRSS)), strings.ReplaceAll(cy.Err, "|", "/"))
	}
	w("\n")
	if r.Err != "" && r.agentStderr != "" {
		w("The agent's stderr (end):\n\n```\n%s\n```\n\n", r.agentStderr)
	}
}
