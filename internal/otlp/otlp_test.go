package otlp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/log"
)

func attrs(r log.Record) map[string]log.Value {
	m := map[string]log.Value{}
	r.WalkAttributes(func(kv log.KeyValue) bool {
		m[kv.Key] = kv.Value
		return true
	})
	return m
}

// TestConvert: NDJSON records become log records named by their type,
// with semantic-convention attributes where one exists.
func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		line     string
		event    string
		severity log.Severity
		want     map[string]string // attribute: value as String()
		absent   []string
	}{
		{
			line:     `{"type":"alert","time":"2026-12-07T19:31:28.276637501Z","alert":"failing","netns":4026532174,"daddr":"127.0.0.1","dport":9092,"dns_name":"kafka.svc","pid":30559,"comm":"bash","container_id":"abc","pod":"p","namespace":"n","container":"c","failures":{"refused":3,"timeout":0},"current_addrs":["10.0.0.1"],"cgroup":null,"rtt":0.5}`,
			event:    "alert",
			severity: log.SeverityWarn,
			want: map[string]string{
				"network.peer.address": "127.0.0.1", "network.peer.port": "9092", "dns.question.name": "kafka.svc",
				"process.pid": "30559", "process.executable.name": "bash", "container.id": "abc",
				"k8s.pod.name": "p", "k8s.namespace.name": "n", "k8s.container.name": "c",
				"socktrace.alert": "failing", "socktrace.netns": "4026532174",
				"socktrace.failures.refused": "3", "socktrace.failures.timeout": "0",
				"socktrace.current_addrs": "[10.0.0.1]", "socktrace.rtt": "0.5",
			},
			absent: []string{"socktrace.cgroup", "socktrace.type", "socktrace.time", "daddr"},
		},
		{line: `{"type":"alert","alert":"recovered","sport":80}`, event: "alert", severity: log.SeverityInfo,
			want: map[string]string{"network.local.port": "80"}},
		{line: `{"type":"alert","alert":"listen-overflow"}`, event: "alert", severity: log.SeverityWarn},
		{line: `{"type":"alert","alert":"listen-recovered"}`, event: "alert", severity: log.SeverityInfo},
		{line: `{"type":"lost","lost":5}`, event: "lost", severity: log.SeverityWarn, want: map[string]string{"socktrace.lost": "5"}},
		{line: `{"type":"skipped"}`, event: "skipped", severity: log.SeverityWarn},
		{line: `{"type":"recording","status":"paused","file":"f.st"}`, event: "recording", severity: log.SeverityWarn,
			want: map[string]string{"socktrace.status": "paused", "socktrace.file": "f.st"}},
		{line: `{"type":"recording","status":"resumed"}`, event: "recording", severity: log.SeverityInfo},
		{line: `{"type":"reconciled","closed":1}`, event: "reconciled", severity: log.SeverityInfo},
		{line: `{"type":"transition","saddr":"::1","old_state":"syn-sent"}`, event: "transition", severity: log.SeverityInfo,
			want: map[string]string{"network.local.address": "::1", "socktrace.old_state": "syn-sent"}},
	} {
		r, err := Convert([]byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if r.EventName() != tc.event || r.Severity() != tc.severity || r.Body().AsString() != tc.line {
			t.Errorf("%s: event %q severity %v body %q", tc.line, r.EventName(), r.Severity(), r.Body().AsString())
		}
		a := attrs(r)
		for k, v := range tc.want {
			if got, ok := a[k]; !ok || got.String() != v {
				t.Errorf("%s: %s = %q (present %v), want %q", tc.line, k, got.String(), ok, v)
			}
		}
		for _, k := range tc.absent {
			if _, ok := a[k]; ok {
				t.Errorf("%s: has %s", tc.line, k)
			}
		}
	}
	r, _ := Convert([]byte(`{"type":"alert","time":"2026-12-07T19:31:28.276637501Z","dport":9092,"pid":1}`))
	if want := time.Date(2026, 12, 7, 19, 31, 28, 276637501, time.UTC); !r.Timestamp().Equal(want) {
		t.Errorf("timestamp %s, want %s", r.Timestamp(), want)
	}
	if a := attrs(r); a["network.peer.port"].Kind() != log.KindInt64 || a["process.pid"].Kind() != log.KindInt64 {
		t.Errorf("ports and pids are not integers: %v", a)
	}
	if _, err := Convert([]byte(`not json`)); err == nil {
		t.Errorf("Convert took a line that is not JSON")
	}
}

// TestCheck: each bad configuration names the flag and what to do.
func TestCheck(t *testing.T) {
	ok := Config{Endpoint: "collector:4317", Protocol: ProtocolGRPC, Interval: time.Second, QueueSize: 1}
	for _, tc := range []struct {
		edit func(*Config)
		want string // "" for no error
	}{
		{func(*Config) {}, ""},
		{func(c *Config) { c.Protocol = ProtocolHTTP; c.Endpoint = "[::1]:4318" }, ""},
		{func(c *Config) { *c = Config{} }, ""},
		{func(c *Config) { c.Endpoint = "https://collector:4317" }, "without a scheme"},
		{func(c *Config) { c.Endpoint = "collector" }, "want HOST:PORT"},
		{func(c *Config) { c.Endpoint = ":4317" }, "no host"},
		{func(c *Config) { c.Endpoint = "collector:otlp" }, `port "otlp" is not a number`},
		{func(c *Config) { c.Endpoint = "collector:0" }, `port "0" is not a number`},
		{func(c *Config) { c.Protocol = "http/json" }, "bad --otlp-protocol"},
		{func(c *Config) { c.Insecure, c.CAFile = true, "ca.pem" }, "--otlp-insecure turns TLS off"},
		{func(c *Config) { c.KeyFile = "k.pem" }, "go together"},
		{func(c *Config) { c.Interval = 0 }, "bad --otlp-interval"},
		{func(c *Config) { c.QueueSize = 0 }, "bad --otlp-queue-size"},
		{func(c *Config) { *c = Config{CAFile: "ca.pem"} }, "--otlp-ca-file given without --otlp-endpoint"},
		{func(c *Config) { *c = Config{Insecure: true} }, "without --otlp-endpoint"},
	} {
		c := ok
		tc.edit(&c)
		err := c.Check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
	if _, err := ParseHeaders([]string{"a=b=c", "x="}); err != nil {
		t.Errorf("ParseHeaders: %v", err)
	}
	if h, _ := ParseHeaders([]string{"authorization=Bearer a=b"}); h["authorization"] != "Bearer a=b" {
		t.Errorf("ParseHeaders kept %v", h)
	}
	if _, err := ParseHeaders([]string{"=v"}); err == nil || !strings.Contains(err.Error(), "want KEY=VALUE") {
		t.Errorf("ParseHeaders(=v): %v", err)
	}
}

// TestWriterQueue: stdout's bytes are cut into lines however they are
// written; a full queue drops the newest, counts them, and says so once.
func TestWriterQueue(t *testing.T) {
	var stderr strings.Builder
	e := &Exporter{c: Config{Endpoint: "collector:4317", QueueSize: 2}, queue: make(chan []byte, 2), stderr: &stderr}
	w := e.Writer()
	for _, chunk := range []string{`{"a":1}` + "\n" + `{"b"`, `:2}` + "\n" + `{"c":3}` + "\n", `{"d":4}` + "\n"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if got := []string{string(<-e.queue), string(<-e.queue)}; got[0] != `{"a":1}` || got[1] != `{"b":2}` {
		t.Errorf("queued %q", got)
	}
	if d := e.dropped[0].Load(); d != 2 {
		t.Errorf("dropped %d, want 2", d)
	}
	if n := strings.Count(stderr.String(), "OTLP log queue full (--otlp-queue-size 2 records)"); n != 1 {
		t.Errorf("stderr said the queue was full %d times: %q", n, stderr.String())
	}
}

// TestHint: each export error says what to check.
func TestHint(t *testing.T) {
	c := &Config{Endpoint: "127.0.0.1:4317"}
	for _, tc := range []struct {
		err    string
		worked bool
		want   string
	}{
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:4317: connect: connection refused"`, false, "is the collector running and listening on 127.0.0.1:4317?"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, false, "TLS refused: check --otlp-ca-file"},
		{`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, false, "add --otlp-insecure"},
		{`failed to send logs to http://127.0.0.1:4318/v1/logs: 400 Bad Request`, false, "may want TLS there"},
		{`rpc error: code = Unavailable desc = error reading from server: EOF`, true, "the collector closed the connection"},
		{`rpc error: code = Unauthenticated desc = bad token`, false, "check --otlp-header"},
		{`dial tcp: lookup collector: no such host`, false, "check --otlp-endpoint"},
	} {
		if got := hint(errors.New(tc.err), c, tc.worked); !strings.Contains(got, tc.want) {
			t.Errorf("hint(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
