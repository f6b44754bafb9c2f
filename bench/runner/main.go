// Command runner is socktrace's benchmark (make bench): socktrace side by
// side with the tools users would pick instead (libbpf-tools tcpstates,
// bpftrace, ss), in one run, alternating them, over several rounds; it
// writes medians and ratios as a markdown report to stdout and to
// bench/RESULTS.md. See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type rate struct {
	label  string
	perSec float64 // 0: as fast as possible
}

type config struct {
	repo, socktrace, loadgen, out, work, goBin string
	tcpstates, bpftrace, btScript, ss, perf    string
	gnuTime                                    string
	hasPeers                                   map[string]bool

	rounds, memRounds, snapRounds, startRounds, workers int
	duration                                            time.Duration
	rates                                               []rate
	tracers, memTracers                                 []string
	snapSizes                                           []int
	memConns                                            int64
	scenarios                                           map[string]bool
	benchtime                                           string
	waitLoad                                            float64
	waitMax                                             time.Duration
	keepOdd                                             string
	soak                                                soakConfig
	lossy                                               lossyConfig
	storm                                               stormConfig
	reportConns                                         int64
	reportRounds                                        int
	host                                                hostConfig
}

func main() {
	c := &config{hasPeers: map[string]bool{}, scenarios: map[string]bool{}}
	var rates, trs, memTrs, sizes, scen string
	flag.StringVar(&c.repo, "repo", ".", "socktrace's source tree (for the micro-benchmarks and the commit)")
	flag.StringVar(&c.socktrace, "socktrace", "bin/socktrace", "the socktrace binary under test")
	flag.StringVar(&c.loadgen, "loadgen", "bin/bench-loadgen", "the load generator (bench/loadgen)")
	flag.StringVar(&c.out, "out", "bench/RESULTS.md", "where to write the report (also printed on stdout); empty: stdout only")
	flag.StringVar(&c.work, "work", "/dev/shm/socktrace-bench", "scratch directory for the tools' output (tmpfs, so disks do not pace them)")
	flag.StringVar(&c.goBin, "go", "go", "go command, for the micro-benchmarks")
	flag.StringVar(&c.tcpstates, "tcpstates", "/usr/sbin/tcpstates", "libbpf-tools tcpstates")
	flag.StringVar(&c.bpftrace, "bpftrace", "bpftrace", "bpftrace")
	flag.StringVar(&c.btScript, "bt", "", "tcpstates.bt for bpftrace (default: the packaged one if any, else bench/tcpstates.bt)")
	flag.StringVar(&c.ss, "ss", "ss", "ss (iproute2)")
	flag.StringVar(&c.perf, "perf", "perf", "perf, to profile socktrace (skipped if missing)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of the throughput scenario")
	flag.IntVar(&c.memRounds, "mem-rounds", 3, "rounds of the memory scenario")
	flag.IntVar(&c.snapRounds, "snap-rounds", 5, "rounds of the snapshot scenario")
	flag.IntVar(&c.startRounds, "start-rounds", 5, "rounds of the start-up scenario")
	flag.IntVar(&c.workers, "workers", 2, "load generator workers (client threads; as many accept)")
	flag.DurationVar(&c.duration, "duration", 4*time.Second, "load duration of each throughput trial")
	flag.StringVar(&rates, "rates", "2000,5000,10000,max", "connection rates (connections a second; max: as fast as possible); each is 10 transitions")
	flag.StringVar(&trs, "tracers", "socktrace,socktrace-nosnap,tcpstates,bpftrace", "tools compared")
	flag.StringVar(&memTrs, "mem-tracers", "socktrace,tcpstates", "tools of the memory scenario")
	flag.StringVar(&sizes, "snapshot-sizes", "10000,50000,100000", "established sockets to list")
	flag.Int64Var(&c.memConns, "mem-conns", 100000, "connections of the memory scenario (10 transitions each)")
	flag.StringVar(&scen, "scenarios", "calibrate,throughput,lossy,dropstorm,report,hostwide,snapshot,startup,memory,soak,profile,micro", "scenarios to run")
	flag.DurationVar(&c.soak.duration, "soak-duration", 10*time.Minute, "length of the soak of socktrace agent (whole cycles)")
	flag.DurationVar(&c.soak.steady, "soak-steady", 15*time.Second, "soak: steady churn of each cycle")
	flag.Float64Var(&c.soak.rate, "soak-rate", 2000, "soak: connections a second of the steady churn")
	flag.DurationVar(&c.soak.burst, "soak-burst", 5*time.Second, "soak: overload burst (as fast as -workers go) of each cycle")
	flag.DurationVar(&c.soak.pause, "soak-pause", 10*time.Second, "soak: quiet pause of each cycle, when the checks run (steady+burst+pause should divide TCP's 60 s time-wait)")
	flag.DurationVar(&c.soak.reconcile, "soak-reconcile", 5*time.Second, "soak: the agent's --reconcile-every; the checks retry for two of these")
	flag.StringVar(&c.soak.ring, "soak-ring", "64K", "soak: the agent's --ring-size (small, so that the bursts overload it)")
	flag.IntVar(&c.soak.history, "soak-history", 1000, "soak: the agent's --history")
	flag.StringVar(&c.soak.otelcol, "soak-otlp", "", "soak: also run it with --otlp-endpoint to this collector binary (make otelcol-test: bin/otelcol-test), right after the plain soak, and compare the agent's CPU per million transitions")
	flag.DurationVar(&c.soak.otlpInterval, "soak-otlp-interval", 10*time.Second, "soak with -soak-otlp: the agent's --otlp-interval")
	flag.IntVar(&c.lossy.drop, "lossy-drop", 10, "lossy: percent of the data packets (longer than 200 bytes) dropped")
	flag.Float64Var(&c.lossy.rate, "lossy-rate", 2000, "lossy: connections a second of the churn load")
	flag.IntVar(&c.lossy.write, "lossy-write", 64<<10, "lossy: bytes each churn connection writes")
	flag.IntVar(&c.lossy.workers, "lossy-workers", 64, "lossy: load generator workers of the churn load (a connection that lost a packet waits for its retransmit)")
	flag.IntVar(&c.lossy.streams, "lossy-streams", 128, "lossy: connections of the bulk load, each writing for the whole trial")
	flag.DurationVar(&c.lossy.duration, "lossy-duration", 5*time.Second, "lossy: load duration of each trial")
	flag.IntVar(&c.lossy.rounds, "lossy-rounds", 3, "lossy: rounds")
	flag.Float64Var(&c.storm.rate, "storm-rate", 200000, "drop storm: UDP datagrams a second to a closed port")
	flag.Float64Var(&c.storm.connRate, "storm-conn-rate", 2000, "drop storm: connections a second of the churn beside it")
	flag.IntVar(&c.storm.senders, "storm-senders", 3, "drop storm: sending sockets (and goroutines)")
	flag.IntVar(&c.storm.rounds, "storm-rounds", 3, "drop storm: rounds (a quiet and a storm trial each)")
	flag.Int64Var(&c.reportConns, "report-conns", 100000, "report: connections recorded (10 transitions each) for socktrace report")
	flag.IntVar(&c.reportRounds, "report-rounds", 3, "report: runs of socktrace report on the recording")
	flag.IntVar(&c.host.rounds, "host-rounds", 3, "host-wide: rounds")
	flag.BoolVar(&c.host.witness, "witness", true, "host-wide: run the witness (internal/witness), an independent count of the tracepoint's invocations, beside each tool")
	flag.StringVar(&c.host.diskDir, "disk-work", "/var/tmp/socktrace-bench", "host-wide: a directory on a disk, for the output to a disk file")
	flag.IntVar(&c.host.slow, "slow-rate", 2<<20, "host-wide: bytes a second the slow consumer reads")
	flag.StringVar(&c.benchtime, "benchtime", "1s", "go test -benchtime of the micro-benchmarks")
	flag.Float64Var(&c.waitLoad, "wait-load", 0, "before starting, wait for the 1-minute load average to fall below this (0: do not wait)")
	flag.DurationVar(&c.waitMax, "wait-max", 20*time.Minute, "longest wait for -wait-load")
	flag.StringVar(&c.keepOdd, "keep-odd", "", "keep the output of trials whose counts do not add up in this directory")
	flag.Parse()

	for _, s := range strings.Split(scen, ",") {
		c.scenarios[strings.TrimSpace(s)] = true
	}
	for _, r := range strings.Split(rates, ",") {
		r = strings.TrimSpace(r)
		if r == "max" {
			c.rates = append(c.rates, rate{"max", 0})
			continue
		}
		n, err := strconv.ParseFloat(r, 64)
		if err != nil || n <= 0 {
			fatal("bad -rates item %q", r)
		}
		c.rates = append(c.rates, rate{r, n})
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fatal("bad -snapshot-sizes item %q", s)
		}
		c.snapSizes = append(c.snapSizes, n)
	}
	if err := c.resolve(strings.Split(trs, ",")); err != nil {
		fatal("%v", err)
	}
	for _, n := range strings.Split(memTrs, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if tracerByName(n) == nil {
			fatal("unknown tracer %q in -mem-tracers", n)
		}
		if (n == "tcpstates" || n == "bpftrace") && !c.hasPeers[n] {
			continue
		}
		c.memTracers = append(c.memTracers, n)
	}
	if c.soak.steady <= 0 || c.soak.burst <= 0 || c.soak.pause <= 0 || c.soak.reconcile <= 0 || c.soak.rate <= 0 {
		fatal("-soak-steady, -soak-burst, -soak-pause, -soak-reconcile and -soak-rate must be positive")
	}
	if os.Geteuid() != 0 {
		fatal("run as root: the tracers load BPF programs and the load generator makes network namespaces")
	}
	if err := os.MkdirAll(c.work, 0o700); err != nil {
		fatal("%v", err)
	}
	defer os.RemoveAll(c.work)

	// kernel.bpf_stats_enabled makes the kernel time each BPF program
	// run (about two clock reads a run, the same for every tool); it is
	// put back as it was.
	restore := setSysctl("/proc/sys/kernel/bpf_stats_enabled", "1")
	defer restore()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		restore()
		os.RemoveAll(c.work)
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	}()

	rep := &report{cfg: c, started: time.Now()}
	rep.waited = waitForLoad(c)
	rep.machine = describeMachine(c)
	rep.loadStart = readLoadavg()

	if c.scenarios["calibrate"] || c.scenarios["throughput"] || c.scenarios["lossy"] || c.scenarios["dropstorm"] || c.scenarios["report"] || c.scenarios["hostwide"] || c.scenarios["memory"] {
		logf("calibrating: transitions per connection, with socktrace")
		cal, err := calibrate(c)
		if err != nil {
			fatal("%v", err)
		}
		perConn = cal.PerConn
		rep.cal = cal
	}
	if c.scenarios["startup"] {
		rep.startup = startup(c)
		rep.loadAfter = append(rep.loadAfter, "start-up: "+readLoadavg())
	}
	if c.scenarios["throughput"] {
		rep.throughput = throughput(c)
		rep.loadAfter = append(rep.loadAfter, "throughput: "+readLoadavg())
	}
	if c.scenarios["lossy"] {
		if c.lossy.drop <= 0 || c.lossy.drop >= 100 || c.lossy.rate <= 0 || c.lossy.workers < 1 || c.lossy.streams < 1 || c.lossy.rounds < 1 {
			fatal("-lossy-drop must be 1 to 99, -lossy-rate, -lossy-workers, -lossy-streams and -lossy-rounds positive")
		}
		rep.lossy = lossy(c)
		if len(rep.lossy) == 0 {
			rep.notes = append(rep.notes, "lossy scenario skipped: nft (nftables) not found")
		}
		rep.loadAfter = append(rep.loadAfter, "lossy: "+readLoadavg())
	}
	if c.scenarios["dropstorm"] {
		if c.storm.rate <= 0 || c.storm.connRate <= 0 || c.storm.senders < 1 || c.storm.rounds < 1 {
			fatal("-storm-rate, -storm-conn-rate, -storm-senders and -storm-rounds must be positive")
		}
		rep.storm = dropStorm(c)
		rep.loadAfter = append(rep.loadAfter, "drop storm: "+readLoadavg())
	}
	if c.scenarios["report"] {
		if c.reportConns < 1 || c.reportRounds < 1 {
			fatal("-report-conns and -report-rounds must be positive")
		}
		rep.reports = reportBench(c)
		rep.loadAfter = append(rep.loadAfter, "report: "+readLoadavg())
	}
	if c.scenarios["hostwide"] {
		rep.hostwide = hostwide(c)
		rep.loadAfter = append(rep.loadAfter, "host-wide: "+readLoadavg())
	}
	if c.scenarios["memory"] {
		rep.memory = memory(c)
		rep.loadAfter = append(rep.loadAfter, "memory: "+readLoadavg())
	}
	if c.scenarios["snapshot"] {
		var err error
		if rep.snapshot, err = snapshotBench(c); err != nil {
			rep.notes = append(rep.notes, "snapshot scenario: "+err.Error())
		}
		rep.loadAfter = append(rep.loadAfter, "snapshot: "+readLoadavg())
	}
	if c.scenarios["soak"] {
		if c.soak.otelcol != "" {
			rep.soakOTLP = soakWithOTLP(c)
			rep.soak = rep.soakOTLP.Plain
			if o := rep.soakOTLP.OTLP; o != nil && !o.passed() {
				rep.notes = append(rep.notes, "soak with OTLP: **checks failed** (see its section)")
			}
		} else {
			rep.soak = soak(c)
		}
		if !rep.soak.passed() {
			rep.notes = append(rep.notes, "soak: **checks failed** (see its section)")
		}
		rep.loadAfter = append(rep.loadAfter, "soak: "+readLoadavg())
	}
	if c.scenarios["profile"] {
		if _, err := exec.LookPath(c.perf); err != nil {
			rep.notes = append(rep.notes, "profile skipped: perf not found (apt-get install linux-perf)")
		} else {
			logf("profiling socktrace with perf at the highest churn")
			rep.profile = profileSocktrace(c)
		}
	}
	if c.scenarios["micro"] {
		logf("go micro-benchmarks")
		var err error
		rep.micro, rep.microCmd, err = micro(c)
		if err != nil {
			rep.notes = append(rep.notes, "micro-benchmarks: "+err.Error())
		}
	}
	rep.finished = time.Now()
	rep.loadEnd = readLoadavg()
	md := rep.markdown()
	fmt.Print(md)
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
			fatal("%v", err)
		}
		logf("report written to %s", c.out)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// resolve finds the tools and keeps the tracers that are there.
func (c *config) resolve(names []string) error {
	abs := func(p *string) error {
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(a); err != nil {
			return err
		}
		*p = a
		return nil
	}
	if err := abs(&c.socktrace); err != nil {
		return fmt.Errorf("socktrace binary: %w (make build)", err)
	}
	if err := abs(&c.loadgen); err != nil {
		return fmt.Errorf("load generator: %w (go build -o bin/bench-loadgen ./bench/loadgen)", err)
	}
	if err := abs(&c.repo); err != nil {
		return err
	}
	if c.btScript == "" {
		c.btScript = findBT(c.repo)
	}
	if _, err := os.Stat(c.tcpstates); err == nil {
		c.hasPeers["tcpstates"] = true
	}
	if p, err := exec.LookPath(c.bpftrace); err == nil && c.btScript != "" {
		c.bpftrace = p
		c.hasPeers["bpftrace"] = true
	}
	if p, err := exec.LookPath(c.ss); err == nil {
		c.ss = p
	}
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		c.gnuTime = "/usr/bin/time"
	} else {
		logf("GNU time (/usr/bin/time) is missing: peak RSS of ss and socktrace --once will include the runner's (make bench installs it)")
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		t := tracerByName(n)
		if t == nil {
			return fmt.Errorf("unknown tracer %q", n)
		}
		if (n == "tcpstates" || n == "bpftrace") && !c.hasPeers[n] {
			logf("%s is missing: left out (make bench installs it)", n)
			continue
		}
		c.tracers = append(c.tracers, n)
	}
	return nil
}

// findBT returns bpftrace's packaged tcpstates.bt if the distribution
// ships one (Debian installs bpftrace's tools as /usr/sbin/*.bt; its
// 0.17 in Debian 12 has no tcpstates.bt), else the benchmark's own.
func findBT(repo string) string {
	for _, p := range []string{"/usr/sbin/tcpstates.bt", "/usr/share/bpftrace/tools/tcpstates.bt", "/usr/share/doc/bpftrace/tools/tcpstates.bt"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p := filepath.Join(repo, "bench", "tcpstates.bt")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func setSysctl(path, v string) func() {
	old, err := os.ReadFile(path)
	if err != nil {
		return func() {}
	}
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return func() {}
	}
	return func() { os.WriteFile(path, old, 0) }
}

func readLoadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// waitForLoad waits (up to -wait-max) for the machine to be quiet.
func waitForLoad(c *config) string {
	if c.waitLoad <= 0 {
		return ""
	}
	start := time.Now()
	for {
		l := loadavg1()
		if l < c.waitLoad {
			return fmt.Sprintf("waited %s for the 1-minute load average to fall below %.2f (it was %.2f)", time.Since(start).Round(time.Second), c.waitLoad, l)
		}
		if time.Since(start) > c.waitMax {
			return fmt.Sprintf("waited %s for the 1-minute load average to fall below %.2f; it stayed at %.2f: ran anyway", c.waitMax, c.waitLoad, l)
		}
		logf("load average %.2f, waiting for it to fall below %.2f", l, c.waitLoad)
		time.Sleep(30 * time.Second)
	}
}
