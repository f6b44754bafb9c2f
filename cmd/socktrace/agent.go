package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/socktrace/socktrace/internal/agent"
	"github.com/socktrace/socktrace/internal/metrics"
	"github.com/socktrace/socktrace/internal/otlp"
)

func newAgentCmd() *cobra.Command {
	f := &flags{}
	a := &agentFlags{config: agent.Config{Version: version, Metrics: metrics.Options{Version: version}}}
	cmd := &cobra.Command{
		Use:   "agent [flags] [FILTER]",
		Short: "Run always on: Prometheus metrics on /metrics, alerts as JSON lines on stdout",
		Long: `agent runs socktrace as a service, until SIGTERM or SIGINT: the same
tracing, snapshot, filters and analysis as socktrace itself, with

  /metrics  Prometheus metrics (text and OpenMetrics): connect attempts by
            destination and outcome, failing destinations, handshake
            times, live sockets by state, CLOSE-WAIT leaks, full listeners,
            transitions seen, lost and skipped;
  /healthz  200 once every program is attached and events are read (the
            body says whether the recording of -w is paused by a write
            error, and whether the OTLP collector takes what is sent:
            neither ever stops the agent), else 503;

and newline-delimited JSON on stdout for log pipelines (journald, kubectl
logs, Vector, Fluent Bit): alerts (failing, recovered), lost and skipped
transitions, reconciliations; --stream adds every transition. -w records
everything, with rotation, as a flight recorder for post-mortems.

--otlp-endpoint sends the same metrics (every --otlp-interval) and the
same records (as OTLP logs) to an OpenTelemetry Collector; a collector
that is down never holds up tracing: what cannot be sent is counted in
socktrace_otlp_dropped_total.

The live table is checked against the kernel (sock_diag) every
--reconcile-every and after any loss, so its figures stay exact however
long the agent runs. Every namespace is listed unless --netns says which.`,
		Example: `  socktrace agent                                        # metrics on 127.0.0.1:9464
  socktrace agent --listen :9464 --web-config web.yml    # TLS and basic auth
  socktrace agent -w /var/lib/socktrace/flight.st --rotate-size 100M --rotate-count 10
  curl -s localhost:9464/metrics | grep socktrace_destination_failing
  socktrace agent --otlp-endpoint otel-collector:4317 --otlp-ca-file ca.pem`,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.output = "json"
			if !cmd.Flags().Changed("netns") {
				f.netns = "all"
			}
			o, err := f.parse(args)
			if err != nil {
				return err
			}
			o.AlertsOnly, o.Gauges = !a.stream, true
			c, err := a.parse()
			if err != nil {
				return err
			}
			stop, err := startProfiles(f.cpuProfile, f.memProfile)
			if err != nil {
				return err
			}
			defer stop()
			return agent.Run(cmd.Context(), o, c)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace agent --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&a.config.Listen, "listen", agent.DefaultListen, "serve /metrics and /healthz on `ADDR` (host:port; :9464 for every address)")
	fl.StringVar(&a.config.WebConfig, "web-config", "", "exporter-toolkit web config `FILE` for TLS and basic auth, as for node_exporter")
	fl.BoolVar(&a.stream, "stream", false, "also write every transition (and the start-up snapshot) to stdout, not only alerts")
	fl.IntVar(&a.config.Metrics.MaxDestinations, "max-destinations", metrics.DefaultMaxDestinations, "at most `N` destination label sets in metrics; the least recently active fold into daddr=\"other\"")
	fl.DurationVar(&a.config.Metrics.ForgetAfter, "forget-after", metrics.DefaultForgetAfter, "a destination's series disappear after `D` without connects (0: never)")
	fl.BoolVar(&a.config.Metrics.WorkloadLabels, "workload-labels", false, "add namespace, pod, container and unit labels (the owner's identity) to the metrics by destination and by owner; label sets stay within --max-destinations")
	fl.StringVar(&a.config.OTLP.Endpoint, "otlp-endpoint", "", "also send metrics and records (as logs) to the OpenTelemetry Collector at `HOST:PORT` over OTLP (4317 for gRPC, 4318 for http/protobuf)")
	fl.StringVar(&a.config.OTLP.Protocol, "otlp-protocol", otlp.ProtocolGRPC, "OTLP transport `PROTOCOL`: grpc or http/protobuf")
	fl.BoolVar(&a.config.OTLP.Insecure, "otlp-insecure", false, "plain text to the collector, no TLS")
	fl.StringArrayVar(&a.otlpHeaders, "otlp-header", nil, "send `KEY=VALUE` with every OTLP request (e.g. authorization=Bearer TOKEN); repeatable")
	fl.StringVar(&a.config.OTLP.CAFile, "otlp-ca-file", "", "verify the collector's TLS certificate with the CA bundle in `FILE` (PEM; default: the system's)")
	fl.StringVar(&a.config.OTLP.CertFile, "otlp-cert-file", "", "client certificate `FILE` (PEM) for mutual TLS, with --otlp-key-file")
	fl.StringVar(&a.config.OTLP.KeyFile, "otlp-key-file", "", "client key `FILE` (PEM) for mutual TLS, with --otlp-cert-file")
	fl.DurationVar(&a.config.OTLP.Interval, "otlp-interval", otlp.DefaultInterval, "send metrics every `D`")
	fl.IntVar(&a.config.OTLP.QueueSize, "otlp-queue-size", otlp.DefaultQueueSize, "at most `N` records wait for the collector; beyond, they are dropped and counted (socktrace_otlp_dropped_total)")
	fl.BoolVar(&f.noSnapshot, "no-snapshot", false, "do not list existing sockets at start: the first reconciliation adds them")
	addFilterFlags(fl, f)
	addAnalysisFlags(fl, f)
	addTraceFlags(fl, f)
	// The agent's ring is smaller than the trace's: it runs on every node
	// forever, and the ring is resident (and kernel memory charged to its
	// cgroup) all that time; a loss is counted and repaired by the
	// reconciliation that follows it.
	f.ringSize = agentRingSize
	fl.Lookup("ring-size").DefValue = agentRingSize
	fl.Lookup("ring-size").Usage = "ring buffer `SIZE` (power of two, e.g. 64K, 8M; 2M holds about 10,900 transitions, in 2 MiB of kernel memory, resident in the agent); larger loses less under bursts"
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile to `FILE` (for developers)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a Go heap profile to `FILE` at exit and on SIGUSR1 (for developers)")
	fl.MarkHidden("cpuprofile")
	fl.MarkHidden("memprofile")
	return cmd
}

// agentRingSize is the agent's default --ring-size.
const agentRingSize = "2M"

// agentFlags holds the agent's own flags, beside the trace's.
type agentFlags struct {
	config      agent.Config
	stream      bool     // --stream: every transition, not only alerts
	otlpHeaders []string // --otlp-header KEY=VALUE
}

// parse checks the agent's own flags: the bounds of its metrics.
func (a *agentFlags) parse() (agent.Config, error) {
	m := a.config.Metrics
	switch {
	case m.MaxDestinations < 1:
		return agent.Config{}, fmt.Errorf("bad --max-destinations value %d: want 1 or more destination label sets", m.MaxDestinations)
	case m.ForgetAfter < 0:
		return agent.Config{}, fmt.Errorf("bad --forget-after value %s: want 0 (never) or a duration such as 15m", m.ForgetAfter)
	}
	h, err := otlp.ParseHeaders(a.otlpHeaders)
	if err != nil {
		return agent.Config{}, err
	}
	a.config.OTLP.Headers = h
	if err := a.config.OTLP.Check(); err != nil {
		return agent.Config{}, err
	}
	return a.config, nil
}
