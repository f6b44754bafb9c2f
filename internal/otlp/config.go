// Package otlp sends the agent's metrics and its NDJSON records to an
// OpenTelemetry Collector over OTLP (gRPC or HTTP/protobuf), with the
// OpenTelemetry Go SDK's exporters. Metrics come from the agent's
// Prometheus registry through the Prometheus bridge: one source for
// /metrics and OTLP. Records come from the agent's stdout, line by line,
// as log records. Nothing here ever blocks the trace: records wait in a
// bounded queue, and what cannot be sent is counted
// (socktrace_otlp_dropped_total) and said once on stderr.
package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Protocols the exporter speaks, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Defaults.
const (
	DefaultInterval  = 30 * time.Second
	DefaultQueueSize = 4096
)

// Config is what the command line says about the export.
type Config struct {
	Endpoint  string            // HOST:PORT of the collector; "" for no export
	Protocol  string            // ProtocolGRPC or ProtocolHTTP
	Insecure  bool              // plain text, no TLS
	Headers   map[string]string // sent with every request (auth tokens)
	CAFile    string            // PEM CA bundle to verify the collector; "" for the system's
	CertFile  string            // client certificate (PEM), with KeyFile
	KeyFile   string
	Interval  time.Duration // between metric exports
	QueueSize int           // log records waiting to be sent, at most
	Version   string        // socktrace's, as a resource attribute
}

// Enabled says whether an endpoint was given.
func (c *Config) Enabled() bool { return c.Endpoint != "" }

// ParseHeaders turns repeated KEY=VALUE flags into a map.
func ParseHeaders(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	h := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("bad --otlp-header %q: want KEY=VALUE, e.g. --otlp-header 'authorization=Bearer TOKEN'", kv)
		}
		h[k] = v
	}
	return h, nil
}

// Check says what is wrong with the configuration, in the flags' words.
func (c *Config) Check() error {
	if !c.Enabled() {
		for _, f := range []struct{ name, v string }{{"--otlp-ca-file", c.CAFile}, {"--otlp-cert-file", c.CertFile}, {"--otlp-key-file", c.KeyFile}} {
			if f.v != "" {
				return fmt.Errorf("%s given without --otlp-endpoint: say where the collector is (HOST:PORT)", f.name)
			}
		}
		if c.Insecure || len(c.Headers) > 0 {
			return errors.New("--otlp-insecure or --otlp-header given without --otlp-endpoint: say where the collector is (HOST:PORT)")
		}
		return nil
	}
	if strings.Contains(c.Endpoint, "://") {
		return fmt.Errorf("bad --otlp-endpoint %q: want HOST:PORT without a scheme, e.g. otel-collector:4317 (use --otlp-insecure for plain text, --otlp-protocol http/protobuf for OTLP/HTTP)", c.Endpoint)
	}
	host, port, err := net.SplitHostPort(c.Endpoint)
	if err != nil {
		return fmt.Errorf("bad --otlp-endpoint %q: want HOST:PORT, e.g. otel-collector:4317 (gRPC) or otel-collector:4318 (http/protobuf): %w", c.Endpoint, err)
	}
	if host == "" {
		return fmt.Errorf("bad --otlp-endpoint %q: no host: want HOST:PORT, e.g. 127.0.0.1:4317", c.Endpoint)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad --otlp-endpoint %q: port %q is not a number from 1 to 65535", c.Endpoint, port)
	}
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("bad --otlp-protocol %q: want grpc (port 4317) or http/protobuf (port 4318)", c.Protocol)
	}
	if c.Insecure && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "") {
		return errors.New("--otlp-insecure turns TLS off: it cannot go with --otlp-ca-file, --otlp-cert-file or --otlp-key-file")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("--otlp-cert-file and --otlp-key-file go together: give both for a client certificate, or neither")
	}
	if c.Interval <= 0 {
		return fmt.Errorf("bad --otlp-interval %s: want a duration above 0, e.g. 30s", c.Interval)
	}
	if c.QueueSize < 1 {
		return fmt.Errorf("bad --otlp-queue-size %d: want 1 or more records", c.QueueSize)
	}
	return nil
}

// tlsConfig reads the TLS files; nil with --otlp-insecure.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.Insecure {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(c.Endpoint)
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read --otlp-ca-file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bad --otlp-ca-file %s: no PEM certificate in it", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bad --otlp-cert-file %s or --otlp-key-file %s: %w", c.CertFile, c.KeyFile, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}
