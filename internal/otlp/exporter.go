package otlp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promb "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// Signals, as the signal label of the counters says them.
const (
	SignalLogs    = "logs"
	SignalMetrics = "metrics"
)

// batchMax: log records sent in one request, at most.
const batchMax = 512

// exportTimeout bounds one request (each retry of a batch is one).
const exportTimeout = 10 * time.Second

// Exporter sends metrics and log records to a collector.
type Exporter struct {
	c      Config
	stderr io.Writer

	queue  chan []byte // NDJSON lines waiting to become log records
	logger log.Logger
	batch  *batcher
	logExp sdklog.Exporter
	lp     *sdklog.LoggerProvider
	mp     *sdkmetric.MeterProvider
	done   chan struct{} // the log loop ended

	exported, dropped [2]atomic.Uint64 // by signal: logs, metrics
	queueFull         atomic.Bool      // the queue overflowed, not yet said as over
	status            [2]signalStatus

	descExported, descDropped *prometheus.Desc

	stopOnce sync.Once
	stop     chan struct{}
}

// signalStatus is whether a signal's last export failed, for /healthz
// and for saying it once on stderr.
type signalStatus struct {
	mu      sync.Mutex
	failing bool
	since   time.Time
	err     error
	dropped uint64 // when it started failing
}

func signalIndex(s string) int {
	if s == SignalMetrics {
		return 1
	}
	return 0
}

var signalNames = [2]string{SignalLogs, SignalMetrics}

// Start checks c, connects lazily to the collector (a collector that is
// down is not an error: what cannot be sent is counted) and starts
// exporting the metrics of g every c.Interval. Records come through
// Writer. stderr gets one line when an export starts failing, one when
// it works again. Stop with Shutdown.
func Start(c Config, g prometheus.Gatherer, stderr io.Writer) (*Exporter, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	tlsc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	e := &Exporter{
		c: c, stderr: stderr,
		queue: make(chan []byte, c.QueueSize),
		done:  make(chan struct{}),
		stop:  make(chan struct{}),
		descExported: prometheus.NewDesc("socktrace_otlp_exported_total",
			"Log records and metric data points the OTLP collector accepted, by signal.", []string{"signal"}, nil),
		descDropped: prometheus.NewDesc("socktrace_otlp_dropped_total",
			"Log records and metric data points that could not be sent to the OTLP collector (it was down or refused them, or the queue was full), by signal.", []string{"signal"}, nil),
	}
	// The SDK reports export errors to the global handler as well: they
	// are counted and said once here instead.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))

	ctx := context.Background()
	res := resource.NewSchemaless(resourceAttrs(c.Version)...)
	// Logs: the exporter's own retries are off: the batch loop retries,
	// with backoff, keeping the batch, while the queue fills.
	var lexp sdklog.Exporter
	var mexp sdkmetric.Exporter
	switch c.Protocol {
	case ProtocolGRPC:
		lo := []otlploggrpc.Option{otlploggrpc.WithEndpoint(c.Endpoint), otlploggrpc.WithTimeout(exportTimeout),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}), otlploggrpc.WithReconnectionPeriod(time.Second)}
		mo := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(c.Endpoint), otlpmetricgrpc.WithTimeout(exportTimeout),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportTimeout}),
			otlpmetricgrpc.WithReconnectionPeriod(time.Second)}
		if tlsc == nil {
			lo, mo = append(lo, otlploggrpc.WithInsecure()), append(mo, otlpmetricgrpc.WithInsecure())
		} else {
			lo = append(lo, otlploggrpc.WithTLSCredentials(credentials.NewTLS(tlsc)))
			mo = append(mo, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(tlsc)))
		}
		if len(c.Headers) > 0 {
			lo, mo = append(lo, otlploggrpc.WithHeaders(c.Headers)), append(mo, otlpmetricgrpc.WithHeaders(c.Headers))
		}
		if lexp, err = otlploggrpc.New(ctx, lo...); err != nil {
			return nil, fmt.Errorf("OTLP log exporter for %s: %w", c.Endpoint, err)
		}
		if mexp, err = otlpmetricgrpc.New(ctx, mo...); err != nil {
			return nil, fmt.Errorf("OTLP metric exporter for %s: %w", c.Endpoint, err)
		}
	case ProtocolHTTP:
		lo := []otlploghttp.Option{otlploghttp.WithEndpoint(c.Endpoint), otlploghttp.WithTimeout(exportTimeout),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false})}
		mo := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(c.Endpoint), otlpmetrichttp.WithTimeout(exportTimeout),
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second, MaxElapsedTime: exportTimeout})}
		if tlsc == nil {
			lo, mo = append(lo, otlploghttp.WithInsecure()), append(mo, otlpmetrichttp.WithInsecure())
		} else {
			lo, mo = append(lo, otlploghttp.WithTLSClientConfig(tlsc)), append(mo, otlpmetrichttp.WithTLSClientConfig(tlsc))
		}
		if len(c.Headers) > 0 {
			lo, mo = append(lo, otlploghttp.WithHeaders(c.Headers)), append(mo, otlpmetrichttp.WithHeaders(c.Headers))
		}
		if lexp, err = otlploghttp.New(ctx, lo...); err != nil {
			return nil, fmt.Errorf("OTLP log exporter for %s: %w", c.Endpoint, err)
		}
		if mexp, err = otlpmetrichttp.New(ctx, mo...); err != nil {
			return nil, fmt.Errorf("OTLP metric exporter for %s: %w", c.Endpoint, err)
		}
	}
	e.logExp = lexp
	e.batch = &batcher{}
	e.lp = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(e.batch),
		sdklog.WithAttributeCountLimit(-1), sdklog.WithAttributeValueLengthLimit(-1))
	e.logger = e.lp.Logger("github.com/socktrace/socktrace", log.WithInstrumentationVersion(c.Version))

	reader := sdkmetric.NewPeriodicReader(&countingExporter{Exporter: mexp, e: e},
		sdkmetric.WithInterval(c.Interval), sdkmetric.WithTimeout(2*exportTimeout),
		sdkmetric.WithProducer(promb.NewMetricProducer(promb.WithGatherer(g))))
	e.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))
	go e.logLoop()
	return e, nil
}

// resourceAttrs: who sends, for every signal.
func resourceAttrs(version string) []attribute.KeyValue {
	host, _ := os.Hostname()
	var u unix.Utsname
	kernel := ""
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	if version == "" {
		version = "dev"
	}
	return []attribute.KeyValue{
		attribute.String("service.name", "socktrace"),
		attribute.String("service.version", version),
		attribute.String("host.name", host),
		attribute.String("host.arch", runtime.GOARCH),
		attribute.String("os.type", runtime.GOOS),
		attribute.String("os.version", kernel),
	}
}

// Writer takes the agent's NDJSON output: each line becomes a log
// record. It never blocks: with the queue full, the line is dropped and
// counted.
func (e *Exporter) Writer() io.Writer { return &lineWriter{e: e} }

type lineWriter struct {
	e       *Exporter
	mu      sync.Mutex
	partial []byte // a line's start, until its end comes
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := indexNL(p)
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		var line []byte
		if len(w.partial) > 0 {
			line = append(w.partial, p[:i]...)
			w.partial = nil
		} else {
			line = append([]byte(nil), p[:i]...)
		}
		if len(line) > 0 {
			w.e.enqueue(line)
		}
		p = p[i+1:]
	}
	return n, nil
}

func indexNL(p []byte) int {
	for i, b := range p {
		if b == '\n' {
			return i
		}
	}
	return -1
}

func (e *Exporter) enqueue(line []byte) {
	select {
	case e.queue <- line:
	default:
		e.dropped[0].Add(1)
		if !e.queueFull.Swap(true) {
			fmt.Fprintf(e.stderr, "socktrace agent: OTLP log queue full (--otlp-queue-size %d records): the collector at %s is not keeping up or is down; dropping records until it catches up, counted in socktrace_otlp_dropped_total{signal=\"logs\"} (tracing, /metrics and stdout go on)\n",
				e.c.QueueSize, e.c.Endpoint)
		}
	}
}

// batcher is the log SDK's processor: it keeps what the logger emits
// for the loop to send itself (the loop owns the retries and the
// counting).
type batcher struct {
	recs []sdklog.Record
}

func (b *batcher) OnEmit(_ context.Context, r *sdklog.Record) error {
	b.recs = append(b.recs, r.Clone())
	return nil
}
func (b *batcher) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (b *batcher) Shutdown(context.Context) error                         { return nil }
func (b *batcher) ForceFlush(context.Context) error                       { return nil }

// logLoop turns queued lines into records and sends them in batches; a
// batch that fails is retried with backoff (1 s doubling to 30 s) and
// kept meanwhile, while new lines wait in the queue (or are dropped when
// it is full).
func (e *Exporter) logLoop() {
	defer close(e.done)
	ctx := context.Background()
	for {
		var line []byte
		select {
		case line = <-e.queue:
		case <-e.stop:
			e.drain(ctx)
			return
		}
		e.emit(ctx, line)
		// Take what else is there, without waiting, up to a batch.
	more:
		for len(e.batch.recs) < batchMax {
			select {
			case line = <-e.queue:
				e.emit(ctx, line)
			default:
				break more
			}
		}
		backoff := time.Second
		for !e.send(ctx) {
			select {
			case <-time.After(backoff):
			case <-e.stop:
				e.drop(len(e.batch.recs))
				e.batch.recs = e.batch.recs[:0]
				e.drain(ctx)
				return
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// drain tries once to send what is queued at shutdown.
func (e *Exporter) drain(ctx context.Context) {
	for {
		select {
		case line := <-e.queue:
			e.emit(ctx, line)
			if len(e.batch.recs) < batchMax {
				continue
			}
		default:
		}
		if len(e.batch.recs) == 0 {
			return
		}
		if !e.send(ctx) {
			e.drop(len(e.batch.recs))
			e.batch.recs = e.batch.recs[:0]
			e.drop(len(e.queue))
			return
		}
	}
}

func (e *Exporter) drop(n int) { e.dropped[0].Add(uint64(n)) }

func (e *Exporter) emit(ctx context.Context, line []byte) {
	r, err := Convert(line)
	if err != nil {
		// Not a record (the table format, a partial write): still sent.
		r = log.Record{}
		r.SetBody(log.StringValue(string(line)))
		r.SetSeverity(log.SeverityInfo)
	}
	r.SetObservedTimestamp(time.Now())
	e.logger.Emit(ctx, r)
}

// send exports the batch; false if it failed (the batch is kept).
func (e *Exporter) send(ctx context.Context) bool {
	if len(e.batch.recs) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, exportTimeout)
	err := e.logExp.Export(ctx, e.batch.recs)
	cancel()
	if err != nil {
		e.failed(0, err)
		return false
	}
	e.exported[0].Add(uint64(len(e.batch.recs)))
	e.batch.recs = e.batch.recs[:0]
	e.worked(0)
	return true
}

// countingExporter counts the metric data points sent and dropped.
type countingExporter struct {
	sdkmetric.Exporter
	e *Exporter
}

func (c *countingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	n := dataPoints(rm)
	err := c.Exporter.Export(ctx, rm)
	if err != nil {
		c.e.dropped[1].Add(uint64(n))
		c.e.failed(1, err)
		return err
	}
	c.e.exported[1].Add(uint64(n))
	c.e.worked(1)
	return nil
}

func dataPoints(rm *metricdata.ResourceMetrics) int {
	n := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[float64]:
				n += len(d.DataPoints)
			case metricdata.Gauge[int64]:
				n += len(d.DataPoints)
			case metricdata.Sum[float64]:
				n += len(d.DataPoints)
			case metricdata.Sum[int64]:
				n += len(d.DataPoints)
			case metricdata.Histogram[float64]:
				n += len(d.DataPoints)
			case metricdata.Histogram[int64]:
				n += len(d.DataPoints)
			case metricdata.ExponentialHistogram[float64]:
				n += len(d.DataPoints)
			case metricdata.ExponentialHistogram[int64]:
				n += len(d.DataPoints)
			case metricdata.Summary:
				n += len(d.DataPoints)
			}
		}
	}
	return n
}

// failed says on stderr, once until it works again, that a signal's
// export fails.
func (e *Exporter) failed(sig int, err error) {
	s := &e.status[sig]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	select {
	case <-e.stop: // shutting down: the last export's fate is counted
		return
	default:
	}
	if s.failing {
		return
	}
	s.failing, s.since, s.dropped = true, time.Now(), e.dropped[sig].Load()
	what := "log records wait in the queue (--otlp-queue-size) and are dropped once it is full"
	if sig == 1 {
		what = "metrics are dropped until it works again (their counters are cumulative: the next export has them)"
	}
	fmt.Fprintf(e.stderr, "socktrace agent: OTLP %s export to %s (%s) failing: %v%s; %s, counted in socktrace_otlp_dropped_total{signal=%q}; tracing, /metrics and stdout go on\n",
		signalNames[sig], e.c.Endpoint, e.c.Protocol, err, hint(err, &e.c, e.exported[sig].Load() > 0), what, signalNames[sig])
}

func (e *Exporter) worked(sig int) {
	s := &e.status[sig]
	s.mu.Lock()
	defer s.mu.Unlock()
	if sig == 0 && e.queueFull.Load() && len(e.queue) < cap(e.queue)/2 {
		e.queueFull.Store(false)
	}
	if !s.failing {
		return
	}
	s.failing = false
	fmt.Fprintf(e.stderr, "socktrace agent: OTLP %s export to %s works again after %s; %d dropped meanwhile\n",
		signalNames[sig], e.c.Endpoint, time.Since(s.since).Round(time.Second), e.dropped[sig].Load()-s.dropped)
}

// hint says what to do about an export error; worked: exports of the
// signal succeeded before (a connection closed then is the collector
// going away, not a TLS mismatch).
func hint(err error, c *Config, worked bool) string {
	msg := err.Error()
	switch {
	case worked && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "transport is closing")):
		return " (the collector closed the connection: restarting, or overloaded?)"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "DeadlineExceeded"):
		return " (no answer in time: is " + c.Endpoint + " reachable, and a collector?)"
	case strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return " (the collector does not speak TLS there: add --otlp-insecure, or enable TLS on its receiver)"
	case strings.Contains(msg, "400 Bad Request") || strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "EOF"):
		return " (the collector may want TLS there: drop --otlp-insecure and give --otlp-ca-file; or check --otlp-protocol: grpc on 4317, http/protobuf on 4318)"
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:"):
		return " (TLS refused: check --otlp-ca-file, --otlp-cert-file and --otlp-key-file against the collector's certificates)"
	case strings.Contains(msg, "connection refused"):
		return " (connection refused: is the collector running and listening on " + c.Endpoint + "? gRPC is usually 4317, http/protobuf 4318)"
	case strings.Contains(msg, "no such host") || strings.Contains(msg, "produced zero addresses"):
		return " (the host name does not resolve: check --otlp-endpoint)"
	case strings.Contains(msg, "Unauthenticated") || strings.Contains(msg, "401") || strings.Contains(msg, "403"):
		return " (the collector refused the credentials: check --otlp-header)"
	}
	return ""
}

// Health is a clause for /healthz's body: where the export goes and
// whether it works. The agent stays healthy either way.
func (e *Exporter) Health() string {
	var fails []string
	for i := range e.status {
		s := &e.status[i]
		s.mu.Lock()
		if s.failing {
			fails = append(fails, fmt.Sprintf("%s failing since %s (%s): %v", signalNames[i],
				s.since.UTC().Format(time.RFC3339), time.Since(s.since).Round(time.Second), s.err))
		}
		s.mu.Unlock()
	}
	if len(fails) == 0 {
		return fmt.Sprintf("OTLP export to %s ok (%d log records, %d metric points sent; %d, %d dropped)",
			e.c.Endpoint, e.exported[0].Load(), e.exported[1].Load(), e.dropped[0].Load(), e.dropped[1].Load())
	}
	return fmt.Sprintf("OTLP collector at %s DOWN or refusing: %s; %d log records, %d metric points dropped so far; tracing goes on",
		e.c.Endpoint, strings.Join(fails, "; "), e.dropped[0].Load(), e.dropped[1].Load())
}

// Describe and Collect make the export's counters part of /metrics.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.descExported
	ch <- e.descDropped
}

func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	for i, s := range signalNames {
		ch <- prometheus.MustNewConstMetric(e.descExported, prometheus.CounterValue, float64(e.exported[i].Load()), s)
		ch <- prometheus.MustNewConstMetric(e.descDropped, prometheus.CounterValue, float64(e.dropped[i].Load()), s)
	}
}

// Shutdown sends what it can within ctx: a last export of the metrics,
// the queued records.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	merr := e.mp.Shutdown(ctx)
	select {
	case <-e.done:
	case <-ctx.Done():
	}
	lerr := e.logExp.Shutdown(ctx)
	e.lp.Shutdown(ctx)
	return errors.Join(merr, lerr)
}
