package main

// End-to-end tests of the agent's OTLP export against a real
// OpenTelemetry Collector: tools/otelcol-test, built from the
// collector's own modules (the OTLP receiver, the file exporter) in a
// module of its own.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

var (
	otelcolOnce sync.Once
	otelcolPath string
	otelcolErr  error
)

// otelcolBin returns the test collector: $SOCKTRACE_OTELCOL (make test
// builds it into bin/), else built here once (the Go build cache keeps
// it for the next run).
func otelcolBin(t *testing.T) string {
	t.Helper()
	otelcolOnce.Do(func() {
		if p := os.Getenv("SOCKTRACE_OTELCOL"); p != "" {
			otelcolPath, otelcolErr = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "socktrace-otelcol-")
		if err != nil {
			otelcolErr = err
			return
		}
		otelcolPath = filepath.Join(dir, "otelcol-test")
		c := exec.Command("go", "build", "-o", otelcolPath, ".")
		c.Dir = "../../tools/otelcol-test"
		if out, err := c.CombinedOutput(); err != nil {
			otelcolErr = fmt.Errorf("building the test collector (tools/otelcol-test): %v\n%s", err, out)
		}
	})
	if otelcolErr != nil {
		t.Fatal(otelcolErr)
	}
	return otelcolPath
}

// collector is a running test collector; out is its file exporter's
// output (one JSON object a line: OTLP's JSON encoding).
type collector struct {
	cmd        *exec.Cmd
	grpc, http string // its receivers' addresses
	out        string
	log        *strings.Builder
}

// startCollector runs a collector on the given ports (0: free ones),
// with TLS on both receivers when certFile is set, writing to a new file
// in dir; it waits until it listens.
func startCollector(t *testing.T, dir string, grpcPort, httpPort int, certFile, keyFile string) *collector {
	t.Helper()
	if grpcPort == 0 {
		grpcPort = freePort(t)
	}
	if httpPort == 0 {
		httpPort = freePort(t)
	}
	f, err := os.CreateTemp(dir, "otlp-*.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := &collector{grpc: fmt.Sprintf("127.0.0.1:%d", grpcPort), http: fmt.Sprintf("127.0.0.1:%d", httpPort),
		out: f.Name(), log: &strings.Builder{}}
	tls := ""
	if certFile != "" {
		tls = fmt.Sprintf("\n        tls:\n          cert_file: %s\n          key_file: %s", certFile, keyFile)
	}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s%s
      http:
        endpoint: %s%s
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs: {receivers: [otlp], exporters: [file]}
    metrics: {receivers: [otlp], exporters: [file]}
`, c.grpc, tls, c.http, tls, c.out)
	cfgFile := f.Name() + ".yaml"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(otelcolBin(t), "--config", cfgFile)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range []string{c.grpc, c.http} {
		for {
			if conn, err := net.Dial("tcp", a); err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the test collector does not listen on %s after 20s:\n%s", a, c.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// stop ends the collector (SIGTERM: it flushes its file).
func (c *collector) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// OTLP's JSON encoding, what the tests read of it.
type otlpValue struct {
	StringValue *string  `json:"stringValue"`
	IntValue    *string  `json:"intValue"`
	BoolValue   *bool    `json:"boolValue"`
	DoubleValue *float64 `json:"doubleValue"`
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
	}
	return ""
}

type otlpKV struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

func attrMap(kvs []otlpKV) map[string]otlpValue {
	m := map[string]otlpValue{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

type otlpPoint struct {
	Attributes   []otlpKV `json:"attributes"`
	TimeUnixNano string   `json:"timeUnixNano"`
	AsDouble     *float64 `json:"asDouble"`
	AsInt        *string  `json:"asInt"`
	Count        *string  `json:"count"`
	BucketCounts []string `json:"bucketCounts"`
}

func (p otlpPoint) value() float64 {
	if p.AsDouble != nil {
		return *p.AsDouble
	}
	if p.AsInt != nil {
		v, _ := strconv.ParseFloat(*p.AsInt, 64)
		return v
	}
	return 0
}

type otlpFile struct {
	ResourceLogs []struct {
		Resource  struct{ Attributes []otlpKV } `json:"resource"`
		ScopeLogs []struct {
			LogRecords []otlpLog `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
	ResourceMetrics []struct {
		Resource     struct{ Attributes []otlpKV } `json:"resource"`
		ScopeMetrics []struct {
			Metrics []struct {
				Name  string                            `json:"name"`
				Sum   *struct{ DataPoints []otlpPoint } `json:"sum"`
				Gauge *struct{ DataPoints []otlpPoint } `json:"gauge"`
				Hist  *struct {
					DataPoints []otlpPoint `json:"dataPoints"`
				} `json:"histogram"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpLog struct {
	TimeUnixNano   string   `json:"timeUnixNano"`
	EventName      string   `json:"eventName"`
	SeverityText   string   `json:"severityText"`
	SeverityNumber int      `json:"severityNumber"`
	Attributes     []otlpKV `json:"attributes"`
	resource       map[string]otlpValue
}

func (l otlpLog) time() time.Time {
	n, _ := strconv.ParseInt(l.TimeUnixNano, 10, 64)
	return time.Unix(0, n)
}

// otlpSeries is a metric data point as the collector got it: name,
// labels (sorted, Prometheus style) and value; kind says sum, gauge or
// histogram.
type otlpSeries struct {
	key, kind string
	point     otlpPoint
}

// read parses the collector's output so far: its log records, and the
// latest data point of every series.
func (c *collector) read(t *testing.T) (logs []otlpLog, latest map[string]otlpSeries) {
	t.Helper()
	latest = map[string]otlpSeries{}
	f, err := os.Open(c.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var o otlpFile
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			continue // a line being written
		}
		for _, rl := range o.ResourceLogs {
			res := attrMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, l := range sl.LogRecords {
					l.resource = res
					logs = append(logs, l)
				}
			}
		}
		for _, rm := range o.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					add := func(kind string, pts []otlpPoint) {
						for _, p := range pts {
							latest[seriesKey(m.Name, p.Attributes)] = otlpSeries{seriesKey(m.Name, p.Attributes), kind, p}
						}
					}
					switch {
					case m.Sum != nil:
						add("sum", m.Sum.DataPoints)
					case m.Gauge != nil:
						add("gauge", m.Gauge.DataPoints)
					case m.Hist != nil:
						add("histogram", m.Hist.DataPoints)
					}
				}
			}
		}
	}
	return logs, latest
}

// seriesKey writes a series as /metrics does: name{label="value",...},
// labels sorted.
func seriesKey(name string, kvs []otlpKV) string {
	if len(kvs) == 0 {
		return name
	}
	parts := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s=%q", kv.Key, kv.Value.String()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// waitCollector polls the collector's output until cond holds.
func (c *collector) waitFor(t *testing.T, d time.Duration, what string, cond func(logs []otlpLog, latest map[string]otlpSeries) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		logs, latest := c.read(t)
		if cond(logs, latest) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector's output has no %s after %s (%d log records, %d series)", what, d, len(logs), len(latest))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestOTLPCollector: the failing story in a namespace, the agent sending
// to a real collector over OTLP/gRPC: the failing alert arrives as a log
// record with the semantic conventions' attributes, the connect-attempt
// metrics with the values /metrics shows. Then the collector stops for
// 10 s: the agent keeps tracing, /healthz stays 200 and says so, the
// queue fills and what is dropped is counted and said once; once the
// collector is back, what the agent kept arrives.
func TestOTLPCollector(t *testing.T) {
	s := newStory(t)
	dir := t.TempDir()
	col := startCollector(t, dir, 0, 0, "", "")
	const queue = 64
	p, addr := startAgent(t, "--netns", s.ns.Path(), "--stream", "--otlp-endpoint", col.grpc, "--otlp-insecure",
		"--otlp-interval", "1s", "--otlp-queue-size", strconv.Itoa(queue))
	client := startClient(t, s.ns, s.dropped, s.good, s.shut)
	comm := processComm(t)

	// The failing alert, as a log record.
	var alert otlpLog
	col.waitFor(t, 40*time.Second, "failing alert for 127.0.0.1:9092", func(logs []otlpLog, _ map[string]otlpSeries) bool {
		for _, l := range logs {
			a := attrMap(l.Attributes)
			if l.EventName == "alert" && a["socktrace.alert"].String() == "failing" && a["network.peer.port"].String() == "9092" {
				alert = l
				return true
			}
		}
		return false
	})
	a := attrMap(alert.Attributes)
	for k, want := range map[string]string{
		"network.peer.address":       "127.0.0.1",
		"network.peer.port":          "9092",
		"process.executable.name":    comm,
		"process.pid":                "", // any
		"socktrace.status":           "failing",
		"socktrace.netns_name":       "", // any
		"socktrace.failures.timeout": "",
	} {
		v, ok := a[k]
		if !ok || (want != "" && v.String() != want) {
			t.Errorf("failing alert: attribute %s = %q (present %v), want %q; all: %v", k, v.String(), ok, want, a)
		}
	}
	if a["network.peer.port"].IntValue == nil || a["process.pid"].IntValue == nil {
		t.Errorf("network.peer.port and process.pid are not integers: %+v %+v", a["network.peer.port"], a["process.pid"])
	}
	if alert.SeverityText != "WARN" || alert.SeverityNumber != 13 {
		t.Errorf("failing alert severity %s (%d), want WARN (13)", alert.SeverityText, alert.SeverityNumber)
	}
	for k, want := range map[string]string{"service.name": "socktrace", "os.type": "linux", "host.name": "", "os.version": "", "service.version": ""} {
		if v, ok := alert.resource[k]; !ok || v.String() == "" || (want != "" && v.String() != want) {
			t.Errorf("resource attribute %s = %q, want %q", k, v.String(), want)
		}
	}
	if time.Since(alert.time()) > time.Minute {
		t.Errorf("alert record time %s", alert.time())
	}

	// The connect-attempt metrics: the same names and labels as /metrics,
	// the same values once the client stops; the handshake times as an
	// OTLP histogram.
	failing := `socktrace_destination_failing{comm="` + comm + `",daddr="127.0.0.1",dport="9092",netns=`
	col.waitFor(t, 20*time.Second, failing+"...} = 1", func(_ []otlpLog, m map[string]otlpSeries) bool {
		for k, v := range m {
			if strings.HasPrefix(k, failing) && v.point.value() == 1 && v.kind == "gauge" {
				return true
			}
		}
		return false
	})
	client.Process.Kill()
	client.Wait()
	time.Sleep(3 * time.Second) // attempts under way end
	var want map[string]float64
	var got map[string]otlpSeries
	keys := []string{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		want = scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
		keys = keys[:0]
		for k := range want {
			if strings.HasPrefix(k, "socktrace_connect_attempts_total{") && strings.Contains(k, `daddr="127.0.0.1"`) && want[k] > 0 {
				keys = append(keys, k)
			}
		}
		_, got = col.read(t)
		same := len(keys) >= 3
		for _, k := range keys {
			if got[k].point.value() != want[k] || got[k].kind != "sum" {
				same = false
			}
		}
		if same || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(keys) < 3 {
		t.Errorf("/metrics has %d connect attempt series, want the 3 outcomes of the story: %v", len(keys), keys)
	}
	for _, k := range keys {
		if got[k].point.value() != want[k] || got[k].kind != "sum" {
			t.Errorf("collector: %s = %v (%s), /metrics: %v", k, got[k].point.value(), got[k].kind, want[k])
		}
	}
	for _, outcome := range []string{"timeout", "refused", "established"} {
		found := false
		for _, k := range keys {
			found = found || strings.Contains(k, `outcome="`+outcome+`"`)
		}
		if !found {
			t.Errorf("no connect attempts with outcome %s in %v", outcome, keys)
		}
	}
	hist := false
	for k, v := range got {
		if strings.HasPrefix(k, "socktrace_connect_duration_seconds{") && strings.Contains(k, fmt.Sprintf(`dport="%d"`, s.healthy)) &&
			v.kind == "histogram" && v.point.Count != nil && *v.point.Count != "0" && len(v.point.BucketCounts) > 1 {
			hist = true
		}
	}
	if !hist {
		t.Errorf("no socktrace_connect_duration_seconds histogram for the healthy port %d", s.healthy)
	}

	// The collector down for 10 s, the client connecting meanwhile.
	before := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	col.stop()
	down := time.Now()
	client = startClient(t, s.ns, s.dropped, s.good, s.shut)
	var healthBody string
	for time.Since(down) < 10*time.Second {
		code, body := healthz(t, addr)
		if code != 200 {
			t.Fatalf("/healthz %d while the collector is down: %s", code, body)
		}
		healthBody = body
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.HasPrefix(healthBody, "ok") || !strings.Contains(healthBody, "OTLP collector at "+col.grpc+" DOWN") {
		t.Errorf("/healthz with the collector down: %q", healthBody)
	}
	during := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	if during["socktrace_transitions_total"] <= before["socktrace_transitions_total"] {
		t.Errorf("the agent stopped tracing while the collector was down: transitions %v then %v",
			before["socktrace_transitions_total"], during["socktrace_transitions_total"])
	}
	dropped := `socktrace_otlp_dropped_total{signal="logs"}`
	if during[dropped] == 0 {
		t.Errorf("%s = 0 after 10 s of --stream with the collector down and a queue of %d", dropped, queue)
	}
	up := time.Now()
	grpcPort, _ := strconv.Atoi(col.grpc[strings.LastIndexByte(col.grpc, ':')+1:])
	httpPort, _ := strconv.Atoi(col.http[strings.LastIndexByte(col.http, ':')+1:])
	col2 := startCollector(t, dir, grpcPort, httpPort, "", "")

	// What was kept arrives: records from the outage.
	col2.waitFor(t, 40*time.Second, "records from while it was down", func(logs []otlpLog, _ map[string]otlpSeries) bool {
		for _, l := range logs {
			if tm := l.time(); tm.After(down) && tm.Before(up) {
				return true
			}
		}
		return false
	})
	col2.waitFor(t, 20*time.Second, "metrics after the restart", func(_ []otlpLog, m map[string]otlpSeries) bool {
		return m["socktrace_transitions_total"].point.value() >= during["socktrace_transitions_total"]
	})
	client.Process.Kill()
	client.Wait()
	code, body := healthz(t, addr)
	if code != 200 || strings.Contains(body, "DOWN") {
		t.Errorf("/healthz after the collector came back: %d %q", code, body)
	}
	after := scrape(t, http.DefaultClient, "http://"+addr+"/metrics")
	if after[`socktrace_otlp_exported_total{signal="logs"}`] <= during[`socktrace_otlp_exported_total{signal="logs"}`] ||
		after[`socktrace_otlp_exported_total{signal="metrics"}`] <= during[`socktrace_otlp_exported_total{signal="metrics"}`] {
		t.Errorf("nothing exported after the restart: %v", after)
	}
	p.stop(t)
	stderr := p.stderr.String()
	for _, line := range []string{
		"OTLP logs export to " + col.grpc + " (grpc) failing:",
		"OTLP log queue full (--otlp-queue-size 64 records)",
		"OTLP logs export to " + col.grpc + " works again",
	} {
		if n := strings.Count(stderr, line); n != 1 {
			t.Errorf("stderr has %q %d times, want once:\n%s", line, n, stderr)
		}
	}
	// Why: the collector refused connections (or, caught in the middle of
	// an export, closed the connection).
	if !strings.Contains(stderr, "connection refused: is the collector running") && !strings.Contains(stderr, "(the collector closed the connection") {
		t.Errorf("stderr does not say why the export failed:\n%s", stderr)
	}
}

// TestOTLPCollectorErrors: bad endpoints and TLS options stop the agent
// with a line saying what to do; a collector that is not there, one whose
// certificate is not trusted, and plain text to a TLS receiver each give
// one clear line while the agent runs on; the right CA file delivers,
// over OTLP/HTTP too.
func TestOTLPCollectorErrors(t *testing.T) {
	testnet.RequireRoot(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--otlp-endpoint", "http://127.0.0.1:4317"}, `bad --otlp-endpoint "http://127.0.0.1:4317": want HOST:PORT without a scheme`},
		{[]string{"--otlp-endpoint", "collector"}, `bad --otlp-endpoint "collector": want HOST:PORT`},
		{[]string{"--otlp-endpoint", "127.0.0.1:99999"}, `port "99999" is not a number from 1 to 65535`},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-protocol", "http"}, `bad --otlp-protocol "http": want grpc (port 4317) or http/protobuf (port 4318)`},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-header", "token"}, `bad --otlp-header "token": want KEY=VALUE`},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-ca-file", "/nonexistent.pem"}, "cannot read --otlp-ca-file: open /nonexistent.pem"},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-insecure", "--otlp-ca-file", "/nonexistent.pem"}, "--otlp-insecure turns TLS off"},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-cert-file", "/c.pem"}, "--otlp-cert-file and --otlp-key-file go together"},
		{[]string{"--otlp-insecure"}, "given without --otlp-endpoint"},
		{[]string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-queue-size", "0"}, "bad --otlp-queue-size 0"},
	} {
		out, err := runSocktrace(t, append([]string{"agent", "--listen", "127.0.0.1:0"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("agent %v: %v, output %q; want an error with %q", tc.args, err, out, tc.want)
		}
	}

	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	col := startCollector(t, dir, 0, 0, cert, key)
	for _, tc := range []struct {
		name string
		args []string
		want string // on stderr, once
	}{
		{"nobody there", []string{"--otlp-endpoint", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--otlp-insecure"},
			"connection refused: is the collector running and listening on 127.0.0.1:"},
		{"untrusted certificate", []string{"--otlp-endpoint", col.grpc},
			"(TLS refused: check --otlp-ca-file, --otlp-cert-file and --otlp-key-file against the collector's certificates)"},
		{"plain text to TLS", []string{"--otlp-endpoint", col.http, "--otlp-protocol", "http/protobuf", "--otlp-insecure"},
			"(the collector may want TLS there: drop --otlp-insecure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, addr := startAgent(t, append([]string{"--stream", "--otlp-interval", "1s"}, tc.args...)...)
			deadline := time.Now().Add(15 * time.Second)
			code, body := healthz(t, addr)
			for !strings.Contains(body, "DOWN or refusing") && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				code, body = healthz(t, addr)
			}
			time.Sleep(2 * time.Second) // more failed exports: still one line
			p.stop(t)
			// One line for the logs (and at most one for the metrics), saying why.
			var lines []string
			for _, l := range strings.Split(p.stderr.String(), "\n") {
				if strings.Contains(l, "OTLP logs export to") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) || strings.Count(p.stderr.String(), "OTLP metrics export to") > 1 {
				t.Errorf("stderr: want one line on the logs' export with %q:\n%s", tc.want, p.stderr.String())
			}
			if code != 200 || !strings.Contains(body, "DOWN or refusing") {
				t.Errorf("/healthz: %d %q", code, body)
			}
		})
	}
	// The collector's own CA (its self-signed certificate): delivered,
	// over gRPC and OTLP/HTTP.
	for _, ep := range []struct{ addr, proto string }{{col.grpc, "grpc"}, {col.http, "http/protobuf"}} {
		p, addr := startAgent(t, "--stream", "--otlp-interval", "1s", "--otlp-endpoint", ep.addr, "--otlp-protocol", ep.proto, "--otlp-ca-file", cert)
		var m map[string]float64
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if m = scrape(t, http.DefaultClient, "http://"+addr+"/metrics"); m[`socktrace_otlp_exported_total{signal="metrics"}`] > 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		p.stop(t)
		if m[`socktrace_otlp_exported_total{signal="metrics"}`] == 0 || strings.Contains(p.stderr.String(), "failing") {
			t.Errorf("%s with --otlp-ca-file: nothing exported; stderr:\n%s", ep.proto, p.stderr.String())
		}
	}
	_, latest := col.read(t)
	if _, ok := latest["socktrace_transitions_total"]; !ok {
		t.Errorf("the TLS collector got no socktrace_transitions_total")
	}
}
