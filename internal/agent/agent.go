// Package agent runs socktrace as an always-on service: the trace
// pipeline with its alerts on stdout, and its state served over HTTP as
// Prometheus metrics (/metrics) with a health check (/healthz), with TLS
// and basic auth from an exporter-toolkit web config file, as every
// Prometheus exporter does.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/socktrace/socktrace/internal/metrics"
	"github.com/socktrace/socktrace/internal/otlp"
	"github.com/socktrace/socktrace/internal/pipeline"
)

// Config is the agent's own part of the command line.
type Config struct {
	Listen    string // host:port for /metrics and /healthz
	WebConfig string // exporter-toolkit web config (TLS, basic auth); "" for none
	Metrics   metrics.Options
	Version   string
	OTLP      otlp.Config // export to an OpenTelemetry Collector; off without an endpoint
}

// DefaultListen is where the agent serves unless told otherwise: the
// loopback only, so that exposing it is a choice.
const DefaultListen = "127.0.0.1:9464"

// healthStall: the reading loop comes round at least once a second; this
// long without is a stalled agent.
const healthStall = 10 * time.Second

// Run serves metrics and runs the trace until ctx ends, SIGINT or SIGTERM.
func Run(ctx context.Context, o *pipeline.Options, c Config) error {
	if c.WebConfig != "" {
		if err := web.Validate(c.WebConfig); err != nil {
			return fmt.Errorf("bad --web-config file %s: %w", c.WebConfig, err)
		}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("cannot serve metrics on --listen %s: %w", c.Listen, err)
	}
	defer ln.Close()

	col := metrics.New(c.Metrics)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	// OTLP: the same registry, bridged, and stdout's records as logs.
	var exp *otlp.Exporter
	if c.OTLP.Enabled() {
		c.OTLP.Version = c.Version
		if exp, err = otlp.Start(c.OTLP, reg, os.Stderr); err != nil {
			return err
		}
		reg.MustRegister(exp)
		o.Tee = exp.Writer()
		fmt.Fprintf(os.Stderr, "socktrace agent: sending metrics every %s and records as logs to the OpenTelemetry Collector at %s (%s)\n",
			c.OTLP.Interval, c.OTLP.Endpoint, c.OTLP.Protocol)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		code, msg := health(col)
		if exp != nil {
			msg += "; " + exp.Health()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	})
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "socktrace agent",
		Description: "TCP socket states and transitions, with connect outcomes by destination",
		Version:     c.Version,
		Links: []web.LandingLinks{
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/healthz", Text: "Health"},
		},
	})
	if err != nil {
		return fmt.Errorf("landing page: %w", err)
	}
	mux.Handle("/", landing)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	noSystemd := false
	served := make(chan error, 1)
	go func() {
		served <- web.Serve(ln, srv, &web.FlagConfig{
			WebListenAddresses: &[]string{c.Listen},
			WebSystemdSocket:   &noSystemd,
			WebConfigFile:      &c.WebConfig,
		}, logger)
	}()
	fmt.Fprintf(os.Stderr, "socktrace agent: serving /metrics and /healthz on %s\n", ln.Addr())

	// The kernel's connect counters are read every few seconds even
	// when nobody scrapes, so their map does not fill up meanwhile.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				col.Update()
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(os.Stderr, "socktrace agent: metrics server stopped: %v\n", err)
				cancel()
			}
		case <-ctx.Done():
		}
	}()
	err = pipeline.Run(ctx, o, col.Hooks())
	shut, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	srv.Shutdown(shut)
	if exp != nil {
		exp.Shutdown(shut)
	}
	return err
}

// health is /healthz: 200 once the program is attached and its events
// are being read. A recording (-w) paused by a write error does not make
// the agent unhealthy (tracing and metrics go on): the body says so.
func health(col *metrics.Collector) (int, string) {
	attached, beat := col.Attached()
	switch {
	case !attached:
		return http.StatusServiceUnavailable, "starting: the BPF program is not attached yet (or the start-up snapshot is being taken)"
	case time.Since(beat) > healthStall:
		return http.StatusServiceUnavailable, fmt.Sprintf("stalled: events not read for %s", time.Since(beat).Round(time.Second))
	}
	msg := "ok: attached, reading events"
	switch r := col.Recording(); {
	case r == nil:
	case r.Paused:
		msg += fmt.Sprintf("; recording PAUSED since %s (%s): %s; it resumes once writes succeed again",
			r.Since.UTC().Format(time.RFC3339), time.Since(r.Since).Round(time.Second), r.Err)
	default:
		msg += "; recording to " + r.File
	}
	return http.StatusOK, msg
}
