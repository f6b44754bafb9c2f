package main

// End-to-end tests of socktrace agent: its metrics scraped by a real
// Prometheus (Debian's), its health check, TLS and basic auth, and its
// least privilege.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/socktrace/socktrace/internal/testkit/promtest"
	"github.com/socktrace/socktrace/internal/testkit/testfs"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAgent runs socktrace agent on a free port and waits until it is
// attached; it returns the process and its address.
func startAgent(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, append([]string{"agent", "--listen", addr}, args...)...)
	return p, addr
}

// scrape fetches /metrics and returns the socktrace_ sample lines.
func scrape(t *testing.T, c *http.Client, url string) map[string]float64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", l)
		}
		out[l[:i]] = v
	}
	return out
}

// withoutLabel is m with label dropped from the keys (the samples of
// series that then have the same key summed): for tests that do not
// look at it.
func withoutLabel(m map[string]float64, label string) map[string]float64 {
	re := regexp.MustCompile(`,?` + label + `="(?:[^"\\]|\\.)*"`)
	out := map[string]float64{}
	for k, v := range m {
		k = strings.Replace(re.ReplaceAllString(k, ""), "{,", "{", 1)
		out[k] += v
	}
	return out
}

// TestAgentPrometheus: a client in a namespace keeps connecting to a
// port whose SYNs are dropped and to a healthy one; a real Prometheus
// scrapes the agent every second with the shipped rules, and sees the
// failing destination, its cause and owner, and the alert.
func TestAgentPrometheus(t *testing.T) {
	s := newStory(t)
	p, addr := startAgent(t, "--netns", s.ns.Path())
	rules, err := filepath.Abs("../../deploy/prometheus/socktrace-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	prom := promtest.Start(t, promtest.Config{Targets: []string{addr}, RuleFiles: []string{rules}})
	startClient(t, s.ns, s.dropped, s.good, s.shut)

	prom.WaitTargetsUp(t, 20*time.Second)
	got := prom.WaitQuery(t, `socktrace_destination_failing{dport="9092"} == 1`, 30*time.Second, nil)
	if l := got[0].Labels; l["daddr"] != "127.0.0.1" || l["comm"] != "socktrace.test" || l["job"] != promtest.JobName {
		t.Errorf("failing destination labels %v", l)
	}
	// The cause: the SYNs time out; the healthy port connects.
	prom.WaitQuery(t, `socktrace_connect_attempts_total{dport="9092",outcome="timeout"} > 0`, 10*time.Second, nil)
	prom.WaitQuery(t, fmt.Sprintf(`socktrace_connect_attempts_total{dport="%d",outcome="established"} > 0`, s.healthy), 10*time.Second, nil)
	prom.WaitQuery(t, fmt.Sprintf(`socktrace_destination_failing{dport="%d"} == 0`, s.healthy), 10*time.Second, nil)
	prom.WaitQuery(t, fmt.Sprintf(`socktrace_connect_duration_seconds_count{dport="%d"} > 0`, s.healthy), 10*time.Second, nil)
	// Why: the dropped port's SYNs were retransmitted, the closed port
	// answered with RSTs; the healthy connections closed without sending
	// data (their SYN and FIN are not data bytes).
	prom.WaitQuery(t, `socktrace_syn_retransmits_total{dport="9092"} > 0`, 10*time.Second, nil)
	prom.WaitQuery(t, fmt.Sprintf(`socktrace_resets_total{dport="%d",direction="received"} > 0`, s.closed), 10*time.Second, nil)
	prom.WaitQuery(t, fmt.Sprintf(`socktrace_connect_attempts_total{dport="%d",outcome="established"} > 3 and on(daddr,dport,comm) socktrace_bytes_total{dport="%d",direction="sent"} == 0`, s.healthy, s.healthy), 10*time.Second, nil)
	a := prom.WaitAlert(t, "SocktraceDestinationFailing", []string{"pending", "firing"}, 20*time.Second)
	// (The dropped port and the closed one both fail.)
	if d := a.Labels["dport"]; (d != "9092" && d != strconv.Itoa(s.closed)) || a.Labels["severity"] == "" ||
		!strings.Contains(a.Annotations["summary"], "127.0.0.1:"+d) {
		t.Errorf("alert %+v", a)
	}

	// The same, by hand, as an SRE would look.
	m := withoutLabel(scrape(t, http.DefaultClient, "http://"+addr+"/metrics"), "netns")
	key := `socktrace_destination_failing{comm="socktrace.test",daddr="127.0.0.1",dport="9092"}`
	if m[key] != 1 {
		t.Errorf("%s = %v, want 1", key, m[key])
	}
	if m[`socktrace_destination_failure_streak{comm="socktrace.test",daddr="127.0.0.1",dport="9092"}`] < 3 {
		t.Errorf("failure streak under 3")
	}
	for _, name := range []string{"socktrace_transitions_total", "socktrace_transitions_lost_total",
		"socktrace_transitions_skipped_total", `socktrace_reconciled_sockets_total{kind="closed"}`,
		`socktrace_reconciled_sockets_total{kind="added"}`, `socktrace_sockets{state="listening"}`,
		"socktrace_destinations_folded_total", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if m["socktrace_transitions_total"] == 0 || m[`socktrace_sockets{state="listening"}`] < 1 {
		t.Errorf("transitions %v, listening sockets %v", m["socktrace_transitions_total"], m[`socktrace_sockets{state="listening"}`])
	}

	// The exposition passes Prometheus's own linter.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		lint := exec.Command(promtool, "check", "metrics")
		lint.Stdin = resp.Body
		out, err := lint.CombinedOutput()
		resp.Body.Close()
		if err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		testnet.Skip(t, "no promtool: install Debian's prometheus package (make deps)")
	}

	// The alert record on stdout, for log pipelines.
	p.waitFor(t, "a failing alert on stdout", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"type":"alert"`) && strings.Contains(l, `"alert":"failing"`) && strings.Contains(l, `"dport":9092`) {
				return true
			}
		}
		return false
	})
	for _, l := range p.output() {
		if strings.Contains(l, `"type":"transition"`) || strings.Contains(l, `"type":"socket"`) {
			t.Fatalf("the agent wrote a transition without --stream: %s", l)
		}
	}
	p.stop(t)
}

// TestAgentHealth: /healthz says 200 once attached; the agent stops
// cleanly on SIGTERM; a bad --listen or --web-config says what is wrong.
func TestAgentHealth(t *testing.T) {
	testnet.RequireRoot(t)
	p, addr := startAgent(t, "--stream", "--no-snapshot")
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "ok") {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}
	// OpenMetrics when asked.
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(string(body), "# EOF\n") {
		t.Errorf("OpenMetrics: content type %q, ends %q", resp.Header.Get("Content-Type"), body[max(0, len(body)-20):])
	}
	p.cmd.Process.Signal(os.Interrupt)
	p.stop(t)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:99999"}, "cannot serve metrics on --listen 127.0.0.1:99999"},
		{[]string{"--web-config", "/nonexistent.yml"}, "bad --web-config file /nonexistent.yml"},
		{[]string{"--max-destinations", "0"}, "bad --max-destinations value 0"},
		{[]string{"--forget-after", "-1s"}, "bad --forget-after value"},
	} {
		out, err := runSocktrace(t, append([]string{"agent"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("agent %v: %v, output %q; want an error with %q", tc.args, err, out, tc.want)
		}
	}
}

// runSocktrace runs socktrace to its end and returns what it printed.
func runSocktrace(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := exec.Command(socktraceBin(t), args...)
	out, err := c.CombinedOutput()
	return string(out), err
}

// TestAgentWebConfig: with an exporter-toolkit web config, /metrics is
// served over TLS and asks for basic auth.
func TestAgentWebConfig(t *testing.T) {
	testnet.RequireRoot(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(dir, "web.yml")
	conf := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n", cert, key, hash)
	if err := os.WriteFile(web, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p, addr := startAgent(t, "--no-snapshot", "--web-config", web)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without credentials: %s, want 401", resp.Status)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "socktrace_up{") {
		t.Errorf("with credentials: %s", resp.Status)
	}
	if r, err := http.Get("http://" + addr + "/metrics"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Errorf("plain HTTP served metrics with TLS configured")
		}
	}
	p.stop(t)
}

// selfSigned writes a self-signed certificate for 127.0.0.1.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "socktrace test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestAgentPressure: CLOSE-WAIT leaks and full listeners reach the
// metrics with their owner, as of the next reconciliation.
func TestAgentPressure(t *testing.T) {
	ns := testnet.New(t)
	neverCloses(t, ns, 3)
	full := ns.FullListener(t, 1)
	_, addr := startAgent(t, "--netns", ns.Path(), "--reconcile-every", "1s", "--close-wait-after", "0s")
	comm := processComm(t)
	cw := fmt.Sprintf(`socktrace_close_wait_sockets{comm=%q}`, comm)
	qf := fmt.Sprintf(`socktrace_listen_queue_full{comm=%q,sport="%d"}`, comm, full)
	deadline := time.Now().Add(10 * time.Second)
	var m map[string]float64
	for time.Now().Before(deadline) {
		if m = scrape(t, http.DefaultClient, "http://"+addr+"/metrics"); m[cw] == 3 && m[qf] == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m[cw] != 3 || m[qf] != 1 {
		t.Errorf("%s = %v (want 3), %s = %v (want 1)", cw, m[cw], qf, m[qf])
	}
	if m[`socktrace_sockets{state="close-wait"}`] != 3 {
		t.Errorf("close-wait sockets %v, want 3", m[`socktrace_sockets{state="close-wait"}`])
	}
}

// healthz returns /healthz's status and body.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAgentRecordingFullDisk: the agent's flight recording (-w) onto a
// filesystem that fills pauses; the agent goes on tracing and serving
// /metrics (socktrace_recording_errors_total, socktrace_recording_paused),
// /healthz answers 200 and says the recording is paused, and the
// recording resumes once there is room again.
func TestAgentRecordingFullDisk(t *testing.T) {
	ns := testnet.New(t)
	port := acceptAndClose(t, ns)
	dir := testfs.Tmpfs(t, 2<<20)
	filler := testfs.Fill(t, dir, 2<<20-256<<10)
	file := filepath.Join(dir, "flight.st")
	p, addr := startAgent(t, "--netns", ns.Path(), "-w", file)
	url := "http://" + addr + "/metrics"
	if code, body := healthz(t, addr); code != 200 || !strings.Contains(body, "recording to "+file) {
		t.Errorf("/healthz before: %d %q", code, body)
	}
	fillUntil(t, p, ns, port, 60, "the recording to pause on a full disk", func(lines []string) bool {
		return linesWith(lines, `"type":"recording"`, `"status":"paused"`, "no space left on device") > 0
	})
	m := scrape(t, http.DefaultClient, url)
	if m["socktrace_recording_errors_total"] != 1 || m["socktrace_recording_paused"] != 1 {
		t.Errorf("metrics while paused: errors_total %v, paused %v; want 1 and 1", m["socktrace_recording_errors_total"], m["socktrace_recording_paused"])
	}
	if code, body := healthz(t, addr); code != 200 || !strings.Contains(body, "recording PAUSED") || !strings.Contains(body, "no space left on device") {
		t.Errorf("/healthz while paused: %d %q; want 200 saying the recording is paused and why", code, body)
	}
	// Tracing goes on.
	seen := m["socktrace_transitions_total"]
	traffic(t, ns, port, 10)
	deadline := time.Now().Add(5 * time.Second)
	for scrape(t, http.DefaultClient, url)["socktrace_transitions_total"] < seen+100 {
		if time.Now().After(deadline) {
			t.Fatalf("socktrace_transitions_total stays at %v while the recording is paused", seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.waitForIn(t, 20*time.Second, "the recording to resume", func(lines []string) bool {
		return linesWith(lines, `"type":"recording"`, `"status":"resumed"`) > 0
	})
	m = scrape(t, http.DefaultClient, url)
	if m["socktrace_recording_errors_total"] != 1 || m["socktrace_recording_paused"] != 0 {
		t.Errorf("metrics after resuming: errors_total %v, paused %v; want 1 and 0", m["socktrace_recording_errors_total"], m["socktrace_recording_paused"])
	}
	if code, body := healthz(t, addr); code != 200 || !strings.Contains(body, "recording to "+file) {
		t.Errorf("/healthz after resuming: %d %q", code, body)
	}
	p.stop(t)
	if _, stderr := readCapture(t, "-o", "json", file); !strings.HasPrefix(stderr, "socktrace: the recording paused at ") {
		t.Errorf("reading the flight recording: stderr %q, want the gap said and no damage", stderr)
	}
}
