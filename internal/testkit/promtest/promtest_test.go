package promtest

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const rules = `groups:
  - name: promtest
    rules:
      - alert: PromtestHigh
        expr: promtest_gauge > 0
        for: 2s
        labels:
          severity: test
        annotations:
          summary: 'promtest_gauge is {{ $value }} in {{ $externalLabels.cluster }}'
`

// TestPrometheus scrapes a hand-written exposition with the real
// Prometheus, queries it and waits for an alert on it.
func TestPrometheus(t *testing.T) {
	begin := time.Now()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		io.WriteString(w, "# HELP promtest_gauge A gauge for promtest's self-test.\n# TYPE promtest_gauge gauge\npromtest_gauge 1\n")
	}))
	t.Cleanup(target.Close)
	host := strings.TrimPrefix(target.URL, "http://")

	ruleFile := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(ruleFile, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}

	s := Start(t, Config{
		Targets:        []string{host},
		ScrapeInterval: time.Second,
		RuleFiles:      []string{ruleFile},
		ExternalLabels: map[string]string{"cluster": "promtest"},
	})
	t.Logf("ready at %s after %v", s.URL(), time.Since(begin).Round(time.Millisecond))

	targets := s.WaitTargetsUp(t, 15*time.Second)
	t.Logf("target up after %v: %s", time.Since(begin).Round(time.Millisecond), targets[0].ScrapeURL)
	if len(targets) != 1 || targets[0].Labels["job"] != JobName || targets[0].ScrapeURL != target.URL+"/metrics" {
		t.Errorf("targets = %+v, want one of job %s at %s/metrics", targets, JobName, target.URL)
	}

	samples := s.WaitQuery(t, "promtest_gauge == 1", 10*time.Second, func(v []Sample) bool { return len(v) > 0 })
	t.Logf("sample after %v: %s", time.Since(begin).Round(time.Millisecond), FormatSamples(samples))
	if len(samples) != 1 {
		t.Fatalf("promtest_gauge == 1: %s, want one sample", FormatSamples(samples))
	}
	if got := samples[0].Labels; got["job"] != JobName || got["instance"] != host || samples[0].Value != 1 {
		t.Errorf("promtest_gauge == 1: %s, want job=%q instance=%q value 1", FormatSamples(samples), JobName, host)
	}

	alert := s.WaitAlert(t, "PromtestHigh", []string{"firing"}, 10*time.Second)
	t.Logf("alert firing after %v: active since %v, value %s, %v",
		time.Since(begin).Round(time.Millisecond), alert.ActiveAt.Sub(begin).Round(time.Millisecond), alert.Value, alert.Annotations)
	if alert.Labels["severity"] != "test" || alert.Annotations["summary"] != "promtest_gauge is 1 in promtest" {
		t.Errorf("alert = %+v, want label severity=test and summary %q", alert, "promtest_gauge is 1 in promtest")
	}

	// Prometheus's own parse error comes back.
	_, err := s.Query("promtest_gauge ==")
	var apiErr *APIError
	if err == nil || !errors.As(err, &apiErr) || apiErr.Type != "bad_data" || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("Query(syntax error) = %v, want a bad_data APIError with Prometheus's parse error", err)
	} else {
		t.Logf("syntax error: %v", err)
	}

	// A scalar is one sample without labels.
	if v, err := s.Query("1 + 1"); err != nil || len(v) != 1 || v[0].Value != 2 || len(v[0].Labels) != 0 {
		t.Errorf("Query(1 + 1) = %v, %v; want one unlabelled sample 2", v, err)
	}
}

// TestConfigErrors checks what Start refuses before running anything.
func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Targets: []string{"http://127.0.0.1:1/metrics"}},
		{ScrapeInterval: 1500 * time.Microsecond},
		{EvaluationInterval: -time.Second},
		{RuleFiles: []string{"/nonexistent/rules.yml"}},
	} {
		if _, err := renderConfig(c); err == nil {
			t.Errorf("renderConfig(%+v) = nil error, want one", c)
		}
	}
	out, err := renderConfig(Config{ScrapeInterval: 1500 * time.Millisecond})
	if err != nil || !strings.Contains(string(out), `"scrape_interval": "1500ms"`) || !strings.Contains(string(out), `"evaluation_interval": "1000ms"`) {
		t.Errorf("renderConfig: %s, %v; want scrape_interval 1500ms, evaluation_interval 1000ms", out, err)
	}
}
