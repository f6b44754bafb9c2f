// Package promtest starts a real Prometheus server for integration tests.
//
// It exists so that socktrace's metrics are tested against the Prometheus
// that users run, not against a mock: the server is Debian's prometheus
// package (2.42, /usr/bin/prometheus, installed by `make deps`), it scrapes
// the test's targets over real loopback sockets, parses their exposition
// with its own parser, stores samples in its own TSDB, and evaluates the
// test's PromQL and alerting rules with its own engine. A metric name, label
// or rule that Prometheus would reject fails the test here.
//
// Each [Start] gets its own configuration file and storage under
// t.TempDir(), and a free port on 127.0.0.1; the package's default
// /etc/prometheus/prometheus.yml is never read. The server is stopped when
// the test ends.
//
// Without the binary the test is skipped, unless SOCKTRACE_REQUIRE_ROOT is
// set (as `make test` sets it), in which case it fails.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the Prometheus server that Start runs: Debian's package.
const Binary = "/usr/bin/prometheus"

// JobName is the job label of every target in Config.Targets.
const JobName = "socktrace"

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
	pollInterval = 250 * time.Millisecond
	// bindAttempts bounds the retries when the picked port is taken
	// between choosing it and Prometheus binding it.
	bindAttempts = 5
	// logTailLines is how much of Prometheus's log failure messages show.
	logTailLines = 40
)

// Config is what the Prometheus server is configured with.
type Config struct {
	// Targets are host:port addresses scraped at /metrics over HTTP, as
	// one scrape job named "socktrace" (JobName).
	Targets []string
	// ScrapeInterval is the global scrape_interval; 1s when zero. The
	// scrape timeout is the smaller of it and 10s.
	ScrapeInterval time.Duration
	// EvaluationInterval is the global evaluation_interval of rule
	// groups; 1s when zero.
	EvaluationInterval time.Duration
	// RuleFiles are rule files (recording and alerting rules), referenced
	// by the configuration. Relative paths are taken from the test's
	// working directory (the package's directory under go test).
	RuleFiles []string
	// ExternalLabels are the global external_labels (seen by alert
	// templates as $externalLabels, not in query results).
	ExternalLabels map[string]string
}

// Server is a running Prometheus server.
type Server struct {
	url     string
	dataDir string
	targets int
	client  *http.Client
	cmd     *exec.Cmd
	log     *logBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // cmd.Wait's error, set before done is closed
}

// Start starts Prometheus with c and waits until it is ready; it is stopped
// when the test ends. It skips the test when Binary is missing (fails when
// SOCKTRACE_REQUIRE_ROOT is set) and fails it when Prometheus does not
// start.
func Start(t testing.TB, c Config) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		reason := fmt.Sprintf("%v: install Debian's prometheus package (make deps)", err)
		if os.Getenv("SOCKTRACE_REQUIRE_ROOT") != "" {
			t.Fatalf("cannot run, and SOCKTRACE_REQUIRE_ROOT is set: %s", reason)
		}
		t.Skip(reason)
	}
	dir := t.TempDir()
	configPath := filepath.Join(dir, "prometheus.yml")
	config, err := renderConfig(c)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	if err := os.WriteFile(configPath, config, 0o644); err != nil {
		t.Fatalf("promtest: %v", err)
	}

	for attempt := 1; ; attempt++ {
		s, err := start(configPath, filepath.Join(dir, fmt.Sprintf("data%d", attempt)))
		if err != nil {
			t.Fatalf("promtest: %v", err)
		}
		s.targets = len(c.Targets)
		err = s.waitReady(readyTimeout)
		if err == nil {
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		s.kill()
		if attempt < bindAttempts && errors.Is(err, errPortTaken) {
			t.Logf("promtest: %v: retrying on another port", err)
			continue
		}
		t.Fatalf("promtest: %v\nconfig %s:\n%s\n%s", err, configPath, config, s.logTail())
	}
}

// URL is the server's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.url }

// Log is all that Prometheus has logged so far (at level warn and above).
func (s *Server) Log() string { return s.log.String() }

// renderConfig writes c as Prometheus's configuration. It is JSON, which
// Prometheus's YAML parser reads, so that no value needs YAML quoting.
func renderConfig(c Config) ([]byte, error) {
	scrape, err := duration("ScrapeInterval", c.ScrapeInterval)
	if err != nil {
		return nil, err
	}
	eval, err := duration("EvaluationInterval", c.EvaluationInterval)
	if err != nil {
		return nil, err
	}
	for _, target := range c.Targets {
		if _, _, err := net.SplitHostPort(target); err != nil {
			return nil, fmt.Errorf("target %q: want host:port: %v", target, err)
		}
	}
	rules := []string{}
	for _, f := range c.RuleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("rule file %q: %v", f, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("rule file: %v", err)
		}
		rules = append(rules, abs)
	}
	type staticConfig struct {
		Targets []string `json:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `json:"job_name"`
		StaticConfigs []staticConfig `json:"static_configs"`
	}
	type global struct {
		ScrapeInterval     string            `json:"scrape_interval"`
		EvaluationInterval string            `json:"evaluation_interval"`
		ExternalLabels     map[string]string `json:"external_labels,omitempty"`
	}
	cfg := struct {
		Global        global         `json:"global"`
		RuleFiles     []string       `json:"rule_files"`
		ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
	}{
		Global:    global{ScrapeInterval: scrape, EvaluationInterval: eval, ExternalLabels: c.ExternalLabels},
		RuleFiles: rules,
		ScrapeConfigs: []scrapeConfig{{
			JobName:       JobName,
			StaticConfigs: []staticConfig{{Targets: append([]string{}, c.Targets...)}},
		}},
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// duration formats d as a Prometheus duration, in whole milliseconds
// (Prometheus does not take Go's fractional "1.5s"); zero means 1s.
func duration(name string, d time.Duration) (string, error) {
	if d == 0 {
		d = time.Second
	}
	if d < time.Millisecond || d%time.Millisecond != 0 {
		return "", fmt.Errorf("%s %v: want a positive whole number of milliseconds", name, d)
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms", nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs Prometheus on a free port; it does not wait for it.
func start(configPath, dataDir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick a port: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{
		url:     "http://" + addr,
		dataDir: dataDir,
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		log:     &logBuffer{},
		done:    make(chan struct{}),
	}
	s.cmd = exec.Command(Binary,
		"--config.file="+configPath,
		"--storage.tsdb.path="+dataDir,
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = sysProcAttr()
	// From a goroutine of its own, which no caller has locked to its OS
	// thread: so Prometheus does not inherit a network namespace the
	// caller's thread may be in. The parent-death signal is tied to the
	// thread that started it, so the goroutine keeps that thread to
	// itself until Prometheus exits: unlocked, the thread could go on to
	// run a goroutine that locks it, enters a namespace and ends (as
	// testnet's Run does), and the kernel would kill Prometheus with it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := s.cmd.Start()
		errc <- err
		if err == nil {
			<-s.done
		}
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s: %v", Binary, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// errPortTaken is waitReady's answer when another server has the port.
var errPortTaken = errors.New("port taken")

// waitReady waits until GET /-/ready answers 200, from this process: the
// server that answers must have this one's storage path (another server
// on a port that was taken after freePort would answer too).
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var last string
	for {
		ok, err := s.ready(ctx)
		switch {
		case ok:
			var flags map[string]string
			if err := s.get("/api/v1/status/flags", nil, &flags); err != nil {
				return fmt.Errorf("prometheus at %s: %v", s.url, err)
			}
			if flags["storage.tsdb.path"] != s.dataDir {
				return fmt.Errorf("%w: the server at %s has storage %q, not %q", errPortTaken, s.url, flags["storage.tsdb.path"], s.dataDir)
			}
			return nil
		case err != nil:
			last = err.Error()
		}
		select {
		case <-s.done:
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
			continue
		}
		// The process's exit cancels ctx too: it goes first.
		select {
		case <-s.done:
			if strings.Contains(s.log.String(), "address already in use") {
				return fmt.Errorf("%w: prometheus exited: %v", errPortTaken, s.waitErr)
			}
			return fmt.Errorf("prometheus exited before it was ready: %v", s.waitErr)
		default:
			return fmt.Errorf("prometheus not ready at %s/-/ready after %v: last answer: %s", s.url, timeout, last)
		}
	}
}

// ready asks /-/ready once, for at most 2s.
func (s *Server) ready(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/-/ready", nil)
	if err != nil {
		return false, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, errors.New(resp.Status)
	}
	return true, nil
}

// exited reports, once the process has exited, how.
func (s *Server) exited() error {
	select {
	case <-s.done:
		return fmt.Errorf("prometheus exited: %v", s.waitErr)
	default:
		return nil
	}
}

// stop ends Prometheus: SIGTERM, then SIGKILL after stopTimeout. That it
// exited during the test fails the test.
func (s *Server) stop(t testing.TB) {
	t.Helper()
	defer s.client.CloseIdleConnections()
	if err := s.exited(); err != nil {
		t.Errorf("promtest: %s during the test\n%s", err, s.logTail())
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		t.Logf("promtest: prometheus did not stop %v after SIGTERM: killing it\n%s", stopTimeout, s.logTail())
		s.kill()
	}
	if t.Failed() {
		t.Logf("promtest: %s", s.logTail())
	}
}

// kill ends the process and waits for it.
func (s *Server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// logTail is the end of Prometheus's log, for failure messages.
func (s *Server) logTail() string {
	log := strings.TrimRight(s.log.String(), "\n")
	if log == "" {
		return "prometheus log: (empty)"
	}
	lines := strings.Split(log, "\n")
	head := "prometheus log:"
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
		head = fmt.Sprintf("prometheus log (last %d lines):", logTailLines)
	}
	return head + "\n" + strings.Join(lines, "\n")
}

// logBuffer keeps what the process writes, safe for concurrent use, and
// at most about maxLog bytes of it (the newest).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLog = 1 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.buf.Len() > maxLog {
		keep := b.buf.Bytes()[b.buf.Len()-maxLog/2:]
		if i := bytes.IndexByte(keep, '\n'); i >= 0 {
			keep = keep[i+1:]
		}
		keep = append([]byte("[...]\n"), keep...)
		b.buf.Reset()
		b.buf.Write(keep)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
