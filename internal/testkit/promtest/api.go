package promtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string // with __name__ where the expression keeps it
	Value  float64
}

// Alert is an active alert, as /api/v1/alerts shows it.
type Alert struct {
	Labels      map[string]string `json:"labels"` // with alertname
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"` // the expression's value, as Prometheus formats it ("1e+00")
}

// Target is an active scrape target, as /api/v1/targets shows it.
type Target struct {
	Labels     map[string]string `json:"labels"` // job, instance
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"` // up, down or unknown (not scraped yet)
	LastError  string            `json:"lastError"`
	LastScrape time.Time         `json:"lastScrape"`
}

// APIError is an error answer of Prometheus's HTTP API.
type APIError struct {
	Endpoint   string // /api/v1/query
	StatusCode int    // 400
	Type       string // bad_data, execution, timeout, ...
	Message    string // Prometheus's own message: "1:16: parse error: ..."
}

func (e *APIError) Error() string {
	return fmt.Sprintf("prometheus %s: %d %s: %s: %s", e.Endpoint, e.StatusCode, http.StatusText(e.StatusCode), e.Type, e.Message)
}

// get calls a JSON API endpoint and decodes its data into v.
func (s *Server) get(endpoint string, params url.Values, v any) error {
	u := s.url + endpoint
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	resp, err := s.client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("prometheus %s: %v", endpoint, err)
	}
	var r struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("prometheus %s: %s: not the API's JSON (%v): %.200q", endpoint, resp.Status, err, body)
	}
	if r.Status != "success" || resp.StatusCode != http.StatusOK {
		return &APIError{Endpoint: endpoint, StatusCode: resp.StatusCode, Type: r.ErrorType, Message: r.Error}
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("prometheus %s: decode data: %v", endpoint, err)
	}
	return nil
}

// Query evaluates expr now, through /api/v1/query. The result must be an
// instant vector (a scalar comes back as one sample without labels). A
// query that Prometheus rejects returns an *APIError with its message.
func (s *Server) Query(expr string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := s.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &result); err != nil {
			return nil, fmt.Errorf("query %q: decode vector: %v", expr, err)
		}
		samples := make([]Sample, 0, len(result))
		for _, r := range result {
			v, err := parseValue(r.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %v", expr, err)
			}
			labels := r.Metric
			if labels == nil {
				labels = map[string]string{}
			}
			samples = append(samples, Sample{Labels: labels, Value: v})
		}
		return samples, nil
	case "scalar":
		var result [2]any
		if err := json.Unmarshal(data.Result, &result); err != nil {
			return nil, fmt.Errorf("query %q: decode scalar: %v", expr, err)
		}
		v, err := parseValue(result)
		if err != nil {
			return nil, fmt.Errorf("query %q: %v", expr, err)
		}
		return []Sample{{Labels: map[string]string{}, Value: v}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %s, want an instant vector", expr, data.ResultType)
	}
}

// parseValue reads [timestamp, "value"]; the value may be NaN or ±Inf.
func parseValue(tv [2]any) (float64, error) {
	str, ok := tv[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v: not a string", tv[1])
	}
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %q: %v", str, err)
	}
	return v, nil
}

// WaitQuery evaluates expr every 250ms until cond holds for its result
// (nil cond: at least one sample), and returns that result. It fails the
// test with the last result and the Prometheus log when timeout passes,
// and at once when Prometheus rejects the expression as malformed.
func (s *Server) WaitQuery(t testing.TB, expr string, timeout time.Duration, cond func([]Sample) bool) []Sample {
	t.Helper()
	if cond == nil {
		cond = func(v []Sample) bool { return len(v) > 0 }
	}
	var samples []Sample
	var qerr error
	err := s.poll(timeout, func() bool {
		samples, qerr = s.Query(expr)
		if qerr != nil {
			var apiErr *APIError
			return errors.As(qerr, &apiErr) && apiErr.Type == "bad_data"
		}
		return cond(samples)
	})
	if qerr != nil {
		t.Fatalf("promtest: %v\n%s", qerr, s.logTail())
	}
	if err != nil {
		t.Fatalf("promtest: query %q: %v: condition not met; last result: %s\n%s", expr, err, FormatSamples(samples), s.logTail())
	}
	return samples
}

// Alerts returns the active (pending and firing) alerts, from /api/v1/alerts.
func (s *Server) Alerts() ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := s.get("/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}

// WaitAlert waits until an alert with alertname name is in one of states
// (nil: any state, pending or firing), and returns it. It fails the test
// with the active alerts, the rules' health and the Prometheus log when
// timeout passes.
func (s *Server) WaitAlert(t testing.TB, name string, states []string, timeout time.Duration) Alert {
	t.Helper()
	var alerts []Alert
	var found Alert
	var aerr error
	err := s.poll(timeout, func() bool {
		alerts, aerr = s.Alerts()
		for _, a := range alerts {
			if a.Labels["alertname"] == name && (states == nil || slices.Contains(states, a.State)) {
				found = a
				return true
			}
		}
		return false
	})
	if err != nil {
		last := fmt.Sprintf("%d active alerts", len(alerts))
		for _, a := range alerts {
			last += fmt.Sprintf("\n  %s %s since %s value %s", FormatLabels(a.Labels), a.State, a.ActiveAt.Format(time.RFC3339Nano), a.Value)
		}
		if aerr != nil {
			last = aerr.Error()
		}
		want := "any state"
		if states != nil {
			want = "state " + strings.Join(states, " or ")
		}
		t.Fatalf("promtest: alert %s in %s: %v; last answer: %s\nrules:\n%s\n%s", name, want, err, last, s.rulesSummary(), s.logTail())
	}
	return found
}

// rulesSummary is each rule's health and last error, for failure messages.
func (s *Server) rulesSummary() string {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			File  string `json:"file"`
			Rules []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Query     string `json:"query"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := s.get("/api/v1/rules", nil, &data); err != nil {
		return "  " + err.Error()
	}
	if len(data.Groups) == 0 {
		return "  (no rule groups loaded)"
	}
	var b strings.Builder
	for _, g := range data.Groups {
		fmt.Fprintf(&b, "  group %s (%s)\n", g.Name, g.File)
		for _, r := range g.Rules {
			fmt.Fprintf(&b, "    %s %s: %s health %s", r.Type, r.Name, r.Query, r.Health)
			if r.State != "" {
				fmt.Fprintf(&b, " state %s", r.State)
			}
			if r.LastError != "" {
				fmt.Fprintf(&b, " error %q", r.LastError)
			}
			b.WriteByte('\n')
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// Targets returns the active scrape targets, from /api/v1/targets.
func (s *Server) Targets() ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := s.get("/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return nil, err
	}
	return data.ActiveTargets, nil
}

// WaitTargetsUp waits until every target of Config.Targets is active and
// every active target has been scraped successfully (health "up"). It fails
// the test with each target's health and last error when timeout passes.
func (s *Server) WaitTargetsUp(t testing.TB, timeout time.Duration) []Target {
	t.Helper()
	var targets []Target
	var terr error
	err := s.poll(timeout, func() bool {
		targets, terr = s.Targets()
		if terr != nil || len(targets) < s.targets {
			return false
		}
		for _, tg := range targets {
			if tg.Health != "up" {
				return false
			}
		}
		return true
	})
	if err != nil {
		last := fmt.Sprintf("%d active targets of %d configured", len(targets), s.targets)
		for _, tg := range targets {
			last += fmt.Sprintf("\n  %s %s", tg.ScrapeURL, tg.Health)
			if tg.LastError != "" {
				last += ": " + tg.LastError
			}
		}
		if terr != nil {
			last = terr.Error()
		}
		t.Fatalf("promtest: targets up: %v; last answer: %s\n%s", err, last, s.logTail())
	}
	return targets
}

// poll calls try every pollInterval until it returns true (nil), timeout
// passes, or Prometheus exits (why not).
func (s *Server) poll(timeout time.Duration, try func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if try() {
			return nil
		}
		if err := s.exited(); err != nil {
			return err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(min(pollInterval, time.Until(deadline)))
	}
}

// FormatLabels writes labels as PromQL does: name{k="v", ...}.
func FormatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return labels["__name__"] + "{" + strings.Join(parts, ", ") + "}"
}

// FormatSamples writes a query result for failure messages.
func FormatSamples(samples []Sample) string {
	if len(samples) == 0 {
		return "(no samples)"
	}
	lines := make([]string, len(samples))
	for i, v := range samples {
		lines[i] = fmt.Sprintf("%s %g", FormatLabels(v.Labels), v.Value)
	}
	return strings.Join(lines, "; ")
}
