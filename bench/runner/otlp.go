package main

// The soak's OTLP option (-soak-otlp COLLECTOR): the same soak run twice,
// back to back, the agent alone and then with --otlp-endpoint to a
// collector the runner starts (tools/otelcol-test: the OTLP receiver and
// the file exporter), to measure what the export costs the agent.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// otlpSoak is the pair of soaks, and what the collector got.
type otlpSoak struct {
	Plain, OTLP *soakResult
	Collector   string
	OutBytes    int64 // the collector's file at the end
	Err         string
}

// soakWithOTLP runs the soak without, then with, the OTLP export.
func soakWithOTLP(c *config) *otlpSoak {
	r := &otlpSoak{Collector: c.soak.otelcol}
	r.Plain = soak(c)
	grpcPort, err1 := freeLocalPort()
	httpPort, err2 := freeLocalPort()
	if err := firstErr(err1, err2); err != nil {
		r.Err = err.Error()
		return r
	}
	// (The scratch directory may be shared, and cleaned by another run.)
	if err := os.MkdirAll(c.work, 0o755); err != nil {
		r.Err = err.Error()
		return r
	}
	base := filepath.Join(c.work, fmt.Sprintf("otelcol-%d", time.Now().UnixNano()))
	out := base + ".json"
	defer os.Remove(out)
	defer os.Remove(base + ".yaml")
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%d"}
      http: {endpoint: "127.0.0.1:%d"}
exporters:
  file: {path: %q, flush_interval: 1s}
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    logs: {receivers: [otlp], exporters: [file]}
    metrics: {receivers: [otlp], exporters: [file]}
`, grpcPort, httpPort, out)
	if err := os.WriteFile(base+".yaml", []byte(cfg), 0o600); err != nil {
		r.Err = err.Error()
		return r
	}
	col := exec.Command(c.soak.otelcol, "--config", base+".yaml")
	col.SysProcAttr = sysProcAttr()
	if err := col.Start(); err != nil {
		r.Err = "the collector: " + err.Error()
		return r
	}
	defer stopProc(col, syscall.SIGTERM, 10*time.Second)
	ep := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	for t0 := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if conn, err := net.Dial("tcp", ep); err == nil {
			conn.Close()
			break
		}
		if time.Since(t0) > 30*time.Second {
			r.Err = "the collector does not listen on " + ep
			return r
		}
	}
	c2 := *c
	c2.soak.otlpArgs = []string{"--otlp-endpoint", ep, "--otlp-insecure", "--otlp-interval", c.soak.otlpInterval.String()}
	r.OTLP = soak(&c2)
	if fi, err := os.Stat(out); err == nil {
		r.OutBytes = fi.Size()
	}
	return r
}

func (r *otlpSoak) markdown(w func(string, ...any)) {
	if r.Plain != nil {
		r.Plain.markdown(w)
	}
	w("## Soak with the OTLP export on\n\n")
	if r.Err != "" {
		w("**Not measured: %s**\n\n", r.Err)
		return
	}
	if r.OTLP == nil || r.Plain == nil || r.OTLP.Transitions == 0 || r.Plain.Transitions == 0 {
		w("**Not measured: a soak did not run.**\n\n")
		return
	}
	p, o := r.Plain, r.OTLP
	pm, om := p.CPU/(p.Transitions/1e6), o.CPU/(o.Transitions/1e6)
	w("The same soak again, right after the one above, the agent with `%s` (its extra arguments) sending to `%s` (-soak-otlp: the OTLP receiver and the file exporter, on this machine; its own CPU is not the agent's). Both runs share the machine with whatever else runs: compare them with each other, not with other reports.\n\n",
		joinArgs(o.AgentArgs[len(p.AgentArgs):]), r.Collector)
	w("| | without OTLP | with OTLP |\n|---|---|---|\n")
	w("| transitions received | %s | %s |\n", thousands(p.Transitions), thousands(o.Transitions))
	w("| agent CPU, s | %.2f | %.2f |\n", p.CPU, o.CPU)
	w("| agent CPU per million transitions, s | %s | %s (**%+.1f%%**; the issue's bound: +5%%) |\n", f2(pm), f2(om), 100*(om/pm-1))
	w("| VmHWM, MiB | %s | %s |\n", mib(float64(p.HWM)), mib(float64(o.HWM)))
	w("| sent to the collector (records; metric points), dropped | | %s; %s, dropped %s; %s (file %s MiB) |\n",
		thousands(o.OTLPExported[0]), thousands(o.OTLPExported[1]), thousands(o.OTLPDropped[0]), thousands(o.OTLPDropped[1]), mib(float64(r.OutBytes)/1024))
	w("\n")
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

// otlpTargets returns the OTLP soak's row of the Targets table: the
// agent's CPU per million transitions with the export on at most 5 %
// above the same soak without it.
func (r *report) otlpTargets(yes func(bool) string) []string {
	s := r.soakOTLP
	if s == nil || s.Err != "" || s.Plain == nil || s.OTLP == nil || s.Plain.Transitions == 0 || s.OTLP.Transitions == 0 {
		return nil
	}
	pm, om := s.Plain.CPU/(s.Plain.Transitions/1e6), s.OTLP.CPU/(s.OTLP.Transitions/1e6)
	return []string{fmt.Sprintf("| the soak with OTLP on: agent CPU per million transitions ≤ +5%% | %s vs %s s per million (%+.1f%%), the two soaks back to back | %s |",
		f2(om), f2(pm), 100*(om/pm-1), yes(om <= 1.05*pm))}
}
