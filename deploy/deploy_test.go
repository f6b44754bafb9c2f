// Package deploy_test checks the deployment files in deploy/: the
// Prometheus rules and configuration with promtool, the Kubernetes
// manifest by decoding it as strictly as the API server does, and the
// systemd unit by parsing it (and with systemd-analyze verify where it is
// installed).
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/socktrace/socktrace/internal/testkit/k8smanifest"
)

// agentCapabilities are the capabilities the agent runs with, without the
// CAP_ prefix (as Kubernetes spells them). The systemd unit and the
// DaemonSet must both grant exactly these: trimming the list means editing
// both files and this line.
var agentCapabilities = []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}

const (
	rulesFile      = "prometheus/socktrace-rules.yml"
	rulesTestFile  = "prometheus/socktrace-rules.test.yml"
	promConfigFile = "prometheus/prometheus.yml"
	daemonSetFile  = "kubernetes/daemonset.yaml"
	unitFile       = "systemd/socktrace-agent.service"
)

// skipOrFail skips the test, or fails it when SOCKTRACE_REQUIRE_ROOT is set
// (as make test sets it): there, a missing tool is a broken setup, not a
// reason to pass.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("SOCKTRACE_REQUIRE_ROOT") != "" {
		t.Fatalf("cannot run, and SOCKTRACE_REQUIRE_ROOT is set: %s", reason)
	}
	t.Skip(reason)
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		skipOrFail(t, "promtool not found: install Debian's prometheus package (make deps)")
	}
	return p
}

// run runs a command and returns its combined output and whether it
// exited successfully.
func run(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The metrics the agent exports. The rules may use no other (besides
// Prometheus's own up).
var agentMetrics = []string{
	"socktrace_connect_attempts_total",
	"socktrace_destination_failing",
	"socktrace_destination_failure_streak",
	"socktrace_connect_duration_seconds",
	"socktrace_sockets",
	"socktrace_close_wait_sockets",
	"socktrace_listen_queue_full",
	"socktrace_transitions_total",
	"socktrace_transitions_lost_total",
	"socktrace_transitions_skipped_total",
	"socktrace_reconciled_sockets_total",
	"socktrace_destinations_folded_total",
}

var expectedAlerts = []string{
	"SocktraceDestinationFailing",
	"SocktraceCloseWaitLeak",
	"SocktraceTransitionsLost",
	"SocktraceListenQueueFull",
	"SocktraceAgentDown",
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			EvalTime  string           `json:"eval_time"`
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestPrometheusRules(t *testing.T) {
	var rules ruleFile
	if err := yaml.Unmarshal(readFile(t, rulesFile), &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var tests ruleTestFile
	if err := yaml.Unmarshal(readFile(t, rulesTestFile), &tests); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}

	// Checks of the files' content that need no promtool.
	t.Run("content", func(t *testing.T) {
		if len(rules.Groups) != 1 || rules.Groups[0].Name != "socktrace" {
			t.Fatalf("want one rule group named socktrace")
		}
		var alerts []string
		metric := regexp.MustCompile(`\bsocktrace_[a-z_]+`)
		for _, r := range rules.Groups[0].Rules {
			alerts = append(alerts, r.Alert)
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			for _, m := range metric.FindAllString(r.Expr, -1) {
				if !slices.Contains(agentMetrics, m) {
					t.Errorf("%s: expression uses %s, which the agent does not export", r.Alert, m)
				}
			}
		}
		if !sameSet(alerts, expectedAlerts) {
			t.Errorf("alerts = %v, want %v", alerts, expectedAlerts)
		}
		// Every rule is tested both firing and not firing.
		firing, silent := map[string]bool{}, map[string]bool{}
		for _, tc := range tests.Tests {
			for _, at := range tc.AlertRuleTest {
				if len(at.ExpAlerts) > 0 {
					firing[at.Alertname] = true
				} else {
					silent[at.Alertname] = true
				}
			}
		}
		for _, a := range expectedAlerts {
			if !firing[a] || !silent[a] {
				t.Errorf("%s: socktrace-rules.test.yml must test it both firing (%v) and not firing (%v)", a, firing[a], silent[a])
			}
		}
	})

	tool := promtool(t)

	t.Run("check rules", func(t *testing.T) {
		if out, ok := run(t, tool, "check", "rules", rulesFile); !ok {
			t.Fatalf("promtool check rules %s:\n%s", rulesFile, out)
		}
	})

	t.Run("test rules", func(t *testing.T) {
		out, ok := run(t, tool, "test", "rules", rulesTestFile)
		if !ok {
			t.Fatalf("promtool test rules %s:\n%s", rulesTestFile, out)
		}
		t.Logf("%s", out)
	})

	// The unit tests must be able to fail: each of these changes to a rule
	// has to break them.
	mutations := []struct{ name, from, to string }{
		{"failing fires after 1m", "for: 2m", "for: 1m"},
		{"close-wait fires after 5m", "for: 10m", "for: 5m"},
		{"lost fires on a flat counter", "increase(socktrace_transitions_lost_total[5m]) > 0", "increase(socktrace_transitions_lost_total[5m]) >= 0"},
		{"queue full fires at once", "socktrace_listen_queue_full == 1\n        for: 1m", "socktrace_listen_queue_full == 1\n        for: 0m"},
		{"down alert on every job", `up{job="socktrace"} == 0`, "up == 0"},
		{"summary without the port", "{{ end }}:{{ $labels.dport }}{{ if $labels.netns", "{{ end }}{{ if $labels.netns"},
		{"summary without the namespace", "{{ if $labels.netns }} in {{ $labels.netns }}{{ end }}", ""},
	}
	orig := string(readFile(t, rulesFile))
	for _, m := range mutations {
		t.Run("mutation/"+m.name, func(t *testing.T) {
			if strings.Count(orig, m.from) != 1 {
				t.Fatalf("%q occurs %d times in %s, want once", m.from, strings.Count(orig, m.from), rulesFile)
			}
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "socktrace-rules.yml"), []byte(strings.Replace(orig, m.from, m.to, 1)))
			writeFile(t, filepath.Join(dir, "socktrace-rules.test.yml"), readFile(t, rulesTestFile))
			if out, ok := run(t, tool, "test", "rules", filepath.Join(dir, "socktrace-rules.test.yml")); ok {
				t.Errorf("promtool test rules passed with %s changed to %s:\n%s", m.from, m.to, out)
			}
		})
	}

	t.Run("check config", func(t *testing.T) {
		var cfg struct {
			RuleFiles     []string         `json:"rule_files"`
			ScrapeConfigs []map[string]any `json:"scrape_configs"`
		}
		if err := yaml.Unmarshal(readFile(t, promConfigFile), &cfg); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cfg.RuleFiles, filepath.Base(rulesFile)) {
			t.Errorf("rule_files = %v, want %s", cfg.RuleFiles, filepath.Base(rulesFile))
		}
		var job map[string]any
		for _, sc := range cfg.ScrapeConfigs {
			if sc["job_name"] == "socktrace" {
				job = sc
			}
		}
		// The alerts select job="socktrace".
		if job == nil {
			t.Fatal(`no scrape config with job_name: socktrace`)
		}
		if job["scrape_interval"] != "15s" {
			t.Errorf("scrape_interval = %v, want 15s", job["scrape_interval"])
		}
		if !strings.Contains(toJSON(t, job["kubernetes_sd_configs"]), `"role":"pod"`) {
			t.Errorf("no kubernetes_sd_configs with role: pod")
		}
		if !strings.Contains(toJSON(t, job["relabel_configs"]), "__meta_kubernetes_pod_annotation_prometheus_io_scrape") {
			t.Errorf("relabel_configs do not look at the prometheus.io/scrape annotation")
		}
		if !strings.Contains(toJSON(t, job["static_configs"]), ":9464") {
			t.Errorf("no static_configs target on port 9464")
		}

		out, ok := run(t, tool, "check", "config", promConfigFile)
		if ok {
			return
		}
		// Debian builds Prometheus without most service discoveries,
		// Kubernetes' among them: its promtool rejects the field itself.
		// Check everything else then, with the Kubernetes discovery left out.
		if !strings.Contains(out, "field kubernetes_sd_configs not found") {
			t.Fatalf("promtool check config %s:\n%s", promConfigFile, out)
		}
		t.Logf("this promtool has no Kubernetes service discovery (Debian builds it without): checking %s without kubernetes_sd_configs", promConfigFile)
		cfg2 := rewriteConfig(t, t.TempDir(), func(job map[string]any) { delete(job, "kubernetes_sd_configs") })
		if out, ok := run(t, tool, "check", "config", cfg2); !ok {
			t.Fatalf("promtool check config (without kubernetes_sd_configs):\n%s\n%s", out, readFile(t, cfg2))
		}
	})

	// The relabeling, on pods as the Kubernetes discovery describes them
	// (served here from a file, which every promtool can read) and on the
	// static target: annotated pods are scraped at their annotations' port
	// and path and named after their node, other pods are dropped, and the
	// static target is kept.
	t.Run("relabeling", func(t *testing.T) {
		dir := t.TempDir()
		pods := []map[string]any{
			{"targets": []string{"10.1.2.3:9464"}, "labels": map[string]string{
				"__meta_kubernetes_pod_name":                            "socktrace-agent-x7k2p",
				"__meta_kubernetes_pod_node_name":                       "node-a",
				"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
				"__meta_kubernetes_pod_annotation_prometheus_io_port":   "9464",
				"__meta_kubernetes_pod_annotation_prometheus_io_path":   "/metrics",
			}},
			{"targets": []string{"10.1.2.4:8080"}, "labels": map[string]string{
				"__meta_kubernetes_pod_name":      "web-5d8f9",
				"__meta_kubernetes_pod_node_name": "node-a",
			}},
			{"targets": []string{"10.1.2.5:8080"}, "labels": map[string]string{
				"__meta_kubernetes_pod_name":                            "api-0",
				"__meta_kubernetes_pod_node_name":                       "node-b",
				"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
				"__meta_kubernetes_pod_annotation_prometheus_io_port":   "9090",
				"__meta_kubernetes_pod_annotation_prometheus_io_path":   "/custom",
			}},
		}
		writeFile(t, filepath.Join(dir, "pods.json"), []byte(toJSON(t, pods)))

		// The pods and the static target, each on its own: this promtool
		// (2.42) panics when a job has both a file and a static discovery.
		var got []string
		for _, sd := range []string{"file_sd_configs", "static_configs"} {
			cfg := rewriteConfig(t, dir, func(job map[string]any) {
				if job["job_name"] != "socktrace" {
					return
				}
				delete(job, "kubernetes_sd_configs")
				if sd == "file_sd_configs" {
					delete(job, "static_configs")
					job["file_sd_configs"] = []any{map[string]any{"files": []any{"pods.json"}}}
				}
			})
			// The targets on stdout, as JSON; debug lines on stderr.
			var stderr bytes.Buffer
			cmd := exec.Command(tool, "check", "service-discovery", "--timeout=1s", cfg, "socktrace")
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("promtool check service-discovery (%s): %v\n%s%s", sd, err, out, stderr.Bytes())
			}
			var targets []struct {
				Labels map[string]string `json:"labels"`
			}
			if err := json.Unmarshal(out, &targets); err != nil {
				t.Fatalf("promtool check service-discovery: %v:\n%s", err, out)
			}
			for _, tg := range targets {
				if len(tg.Labels) > 0 { // dropped targets have none
					l := tg.Labels
					got = append(got, l["instance"]+" "+l["__address__"]+" "+l["__metrics_path__"]+" pod="+l["pod"])
				}
			}
		}
		want := []string{
			"node-a 10.1.2.3:9464 /metrics pod=socktrace-agent-x7k2p",
			"node-b 10.1.2.5:9090 /custom pod=api-0",
			"localhost:9464 localhost:9464 /metrics pod=",
		}
		if !sameSet(got, want) {
			t.Errorf("targets after relabeling:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

// rewriteConfig writes prometheus.yml, with edit applied to each scrape
// config, and the rules it loads to dir, and returns the configuration's
// path.
func rewriteConfig(t *testing.T, dir string, edit func(job map[string]any)) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal(readFile(t, promConfigFile), &cfg); err != nil {
		t.Fatal(err)
	}
	for _, sc := range cfg["scrape_configs"].([]any) {
		edit(sc.(map[string]any))
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	writeFile(t, path, b)
	writeFile(t, filepath.Join(dir, filepath.Base(rulesFile)), readFile(t, rulesFile))
	return path
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestDaemonSetStrict(t *testing.T) {
	data := readFile(t, daemonSetFile)
	m, err := k8smanifest.Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", daemonSetFile, err)
	}

	// The strict decoding has to be able to fail, or the test above
	// proves nothing.
	t.Run("rejects", func(t *testing.T) {
		for _, tc := range []struct{ name, from, to, want string }{
			{"unknown field", "hostPID: true", "hostPIDD: true", "hostPIDD"},
			{"field in the wrong case", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
			{"duplicate field", "hostPID: true", "hostPID: true\n      hostPID: false", "hostPID"},
			{"wrong type", "containerPort: 9464", "containerPort: metrics", "containerPort"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if !bytes.Contains(data, []byte(tc.from)) {
					t.Fatalf("%s has no %q", daemonSetFile, tc.from)
				}
				_, err := k8smanifest.Decode(bytes.Replace(data, []byte(tc.from), []byte(tc.to), 1))
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("decoding with %q: err = %v, want one naming %s", tc.to, err, tc.want)
				}
				t.Logf("rejected: %v", err)
			})
		}
	})

	ds := m.DaemonSet
	if ds.Name != "socktrace-agent" || ds.Namespace != m.Namespace.Name || m.ServiceAccount.Namespace != m.Namespace.Name {
		t.Errorf("DaemonSet %s/%s, ServiceAccount in %s, Namespace %s: want socktrace-agent, all in one namespace",
			ds.Namespace, ds.Name, m.ServiceAccount.Namespace, m.Namespace.Name)
	}
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != m.ServiceAccount.Name {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, m.ServiceAccount.Name)
	}
	if !pod.HostPID {
		t.Error("hostPID must be true: the agent reads the host's /proc for socket owners and network namespaces")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork must be false: /metrics stays off the node's addresses")
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", pod.PriorityClassName)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("tolerations = %+v, want one with operator Exists and no key (every node)", pod.Tolerations)
	}
	if s := ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.String() != "10%" {
		t.Errorf("updateStrategy = %+v, want RollingUpdate with maxUnavailable 10%%", s)
	}
	sel := ds.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Fatal("no selector")
	}
	for k, v := range sel.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}

	ann := ds.Spec.Template.Annotations
	for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9464", "prometheus.io/path": "/metrics"} {
		if ann[k] != v {
			t.Errorf("pod annotation %s = %q, want %q", k, ann[k], v)
		}
	}

	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "socktrace:latest" {
		t.Errorf("image = %q", c.Image)
	}
	if want := []string{"agent", "--listen", "0.0.0.0:9464", "--netns", "all", "--host-root", "/host", "--workload-labels"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("ports = %+v, want metrics on 9464", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe = %+v, want GET /healthz on port metrics", name, p)
		}
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext with capabilities")
	}
	var drop, add []string
	for _, cp := range sc.Capabilities.Drop {
		drop = append(drop, string(cp))
	}
	for _, cp := range sc.Capabilities.Add {
		add = append(add, string(cp))
	}
	if !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", drop)
	}
	if !sameSet(add, agentCapabilities) || len(add) != len(agentCapabilities) {
		t.Errorf("capabilities add %v, want exactly %v", add, agentCapabilities)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: Kubernetes gives no ambient capabilities to other users")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged must not be set")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type == "" {
		t.Error("no seccompProfile: say which, and why, explicitly")
	}

	limits, requests := c.Resources.Limits, c.Resources.Requests
	for _, r := range []struct {
		name string
		got  string
		want string
	}{
		{"requests.cpu", requests.Cpu().String(), "50m"},
		{"requests.memory", requests.Memory().String(), "64Mi"},
		{"limits.cpu", limits.Cpu().String(), "500m"},
		{"limits.memory", limits.Memory().String(), "256Mi"},
	} {
		if r.got != r.want {
			t.Errorf("resources %s = %s, want %s", r.name, r.got, r.want)
		}
	}

	// Host paths: where each is mounted, read-only or not.
	volumes := map[string]*corev1.HostPathVolumeSource{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v.HostPath
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		if hp := volumes[vm.Name]; hp != nil {
			mounts[hp.Path] = vm
		}
	}
	for _, w := range []struct {
		hostPath, mountPath string
		readOnly            bool
	}{
		{"/sys/kernel/btf", "/sys/kernel/btf", true},
		{"/run/netns", "/run/netns", true},
		{"/", "/host", true}, // --host-root: /proc, the cgroup mount, the kubelet's logs
		{"/var/lib/socktrace", "/var/lib/socktrace", false},
	} {
		vm, ok := mounts[w.hostPath]
		if !ok {
			t.Errorf("host path %s is not mounted", w.hostPath)
			continue
		}
		if vm.MountPath != w.mountPath || vm.ReadOnly != w.readOnly {
			t.Errorf("host path %s mounted at %s read-only %v, want at %s read-only %v", w.hostPath, vm.MountPath, vm.ReadOnly, w.mountPath, w.readOnly)
		}
	}
	if hp := volumes["state"]; hp == nil || hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Errorf("/var/lib/socktrace must be a hostPath of type DirectoryOrCreate")
	}
}

// unit is a systemd unit file: section -> key -> values, in order (a key
// may be given more than once, and an empty value resets the list).
type unit map[string]map[string][]string

func parseUnit(data []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	var pending string // a line continued with a trailing backslash
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: not a key=value in a section: %s", n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if value == "" {
			u[section][key] = []string{}
			continue
		}
		u[section][key] = append(u[section][key], value)
	}
	return u, sc.Err()
}

// last is the value of a key as systemd takes it: the last one given.
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// list is a space-separated list setting with all its lines merged.
func (u unit) list(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	data := readFile(t, unitFile)
	u, err := parseUnit(data)
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}

	for _, w := range []struct{ key, want string }{
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"StateDirectory", "socktrace"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectControlGroups", "yes"},
		{"RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallArchitectures", "native"},
		{"Restart", "on-failure"},
		{"MemoryMax", "256M"},
		{"CPUQuota", "50%"},
		{"KillSignal", "SIGTERM"},
		{"User", "socktrace"},
	} {
		t.Run(w.key, func(t *testing.T) {
			if got, _ := u.last("Service", w.key); got != w.want {
				t.Errorf("%s=%q, want %q", w.key, got, w.want)
			}
		})
	}

	// Each of these would take away what the agent needs: /proc of other
	// users' processes, other network namespaces, or its system calls.
	for _, key := range []string{"PrivateNetwork", "ProtectKernelTunables", "ProtectProc", "ProcSubset", "RestrictNamespaces", "SystemCallFilter"} {
		t.Run("no "+key, func(t *testing.T) {
			if v, ok := u.last("Service", key); ok {
				t.Errorf("%s=%s is set: it breaks the agent (see the comment in the unit)", key, v)
			}
		})
	}

	t.Run("capabilities", func(t *testing.T) {
		var want []string
		for _, c := range agentCapabilities {
			want = append(want, "CAP_"+c)
		}
		bounding, ambient := u.list("Service", "CapabilityBoundingSet"), u.list("Service", "AmbientCapabilities")
		if !sameSet(bounding, ambient) {
			t.Errorf("CapabilityBoundingSet %v and AmbientCapabilities %v differ", bounding, ambient)
		}
		if !sameSet(bounding, want) || len(bounding) != len(want) {
			t.Errorf("CapabilityBoundingSet %v, want exactly %v (as the DaemonSet)", bounding, want)
		}
	})

	t.Run("ExecStart", func(t *testing.T) {
		execs := u["Service"]["ExecStart"]
		if len(execs) != 1 {
			t.Fatalf("ExecStart given %d times, want once", len(execs))
		}
		// Prefixes such as - (ignore failure) and @ come before the path.
		args := strings.Fields(strings.TrimLeft(execs[0], "-@:+!"))
		if len(args) < 2 || filepath.Base(args[0]) != "socktrace" || args[1] != "agent" {
			t.Fatalf("ExecStart=%s does not run socktrace agent", execs[0])
		}
		if !filepath.IsAbs(args[0]) {
			t.Errorf("ExecStart=%s: the binary needs an absolute path", execs[0])
		}
		flag := func(name string) string {
			if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
				return args[i+1]
			}
			return ""
		}
		if got := flag("--listen"); got != "127.0.0.1:9464" {
			t.Errorf("--listen %q, want 127.0.0.1:9464", got)
		}
		// ProtectSystem=strict leaves only the state directory writable.
		state, _ := u.last("Service", "StateDirectory")
		if w := flag("-w"); !strings.HasPrefix(w, "/var/lib/"+state+"/") {
			t.Errorf("-w %q is not in the state directory /var/lib/%s, the only writable place", w, state)
		}
		if flag("--rotate-size") == "" || flag("--rotate-count") == "" {
			t.Errorf("ExecStart=%s: the flight recording must rotate (--rotate-size, --rotate-count)", execs[0])
		}
	})

	// systemd expands $NAME in command lines itself, to nothing when it
	// does not know NAME: a shell variable has to be written $$NAME.
	t.Run("no unescaped $", func(t *testing.T) {
		for key, values := range u["Service"] {
			if !strings.HasPrefix(key, "Exec") {
				continue
			}
			for _, v := range values {
				if strings.Contains(strings.ReplaceAll(v, "$$", ""), "$") {
					t.Errorf("%s=%s: a $ that systemd would expand (write $$ for the shell)", key, v)
				}
			}
		}
	})

	t.Run("ExecStartPre keeps the previous recording", func(t *testing.T) {
		pre := u["Service"]["ExecStartPre"]
		if len(pre) != 1 {
			t.Fatalf("ExecStartPre given %d times, want once", len(pre))
		}
		script, ok := strings.CutPrefix(pre[0], "/bin/sh -c '")
		if !ok || !strings.HasSuffix(script, "'") {
			t.Fatalf("ExecStartPre=%s: want /bin/sh -c '...'", pre[0])
		}
		// What systemd passes the shell, run on a scratch state directory.
		dir := t.TempDir()
		script = strings.ReplaceAll(strings.TrimSuffix(script, "'"), "$$", "$")
		script = strings.ReplaceAll(script, "/var/lib/socktrace", dir)
		runPre := func() {
			t.Helper()
			if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
				t.Fatalf("ExecStartPre: %v\n%s", err, out)
			}
		}
		ls := func(d string) []string {
			t.Helper()
			entries, err := os.ReadDir(d)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			return names
		}

		// First start: nothing to keep.
		runPre()
		if got := ls(filepath.Join(dir, "previous")); len(got) != 0 {
			t.Errorf("previous/ after a first start = %v, want empty", got)
		}
		// A restart after a rotated recording (the oldest, flight.st, gone).
		for _, f := range []string{"flight.st.11", "flight.st.12", "previous/flight.st", "notes.txt"} {
			writeFile(t, filepath.Join(dir, f), []byte(f))
		}
		runPre()
		if got, want := ls(filepath.Join(dir, "previous")), []string{"flight.st.11", "flight.st.12"}; !slices.Equal(got, want) {
			t.Errorf("previous/ = %v, want %v (the last run's files only)", got, want)
		}
		if got, want := ls(dir), []string{"notes.txt", "previous"}; !slices.Equal(got, want) {
			t.Errorf("state directory = %v, want %v", got, want)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed (it comes with systemd): the unit is checked by the parsing above only")
		}
		out := verifyUnit(t, sa, data)
		if out != "" {
			t.Fatalf("systemd-analyze verify %s:\n%s", unitFile, out)
		}
		// And it must notice a broken unit, or passing means nothing.
		broken := bytes.Replace(data, []byte("ProtectSystem=strict"), []byte("ProtectSystem=stric\nProtectSystm=strict"), 1)
		if out := verifyUnit(t, sa, broken); !strings.Contains(out, "ProtectSystm") || !strings.Contains(out, "stric") {
			t.Fatalf("systemd-analyze verify did not object to a misspelt key and value:\n%s", out)
		}
	})
}

// verifyUnit runs systemd-analyze verify on a copy of the unit and returns
// what it says about it (nothing for a good unit). The copy runs a stub in
// place of /usr/local/bin/socktrace, because verify checks that the
// binary exists and is executable, and it need not be installed here.
func verifyUnit(t *testing.T, sa string, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "socktrace")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("/usr/local/bin/socktrace "), []byte(stub+" "))
	name := filepath.Join(dir, filepath.Base(unitFile))
	writeFile(t, name, data)
	out, err := exec.Command(sa, "verify", "--man=no", name).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	// verify also loads the units this one refers to (network.target,
	// multi-user.target) and reports any problem the host's own units have:
	// keep only what concerns this unit.
	var ours []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, filepath.Base(unitFile)) {
			ours = append(ours, strings.TrimRight(line, "\n"))
		} else if line = strings.TrimSpace(line); line != "" {
			t.Logf("systemd-analyze verify (not about this unit): %s", line)
		}
	}
	if err != nil && len(ours) == 0 {
		ours = append(ours, fmt.Sprintf("%v:\n%s", err, out))
	}
	return strings.Join(ours, "\n")
}
