package otlp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"go.opentelemetry.io/otel/log"
)

// semconv names the record fields that the OpenTelemetry semantic
// conventions have a name for; every other field is "socktrace."+field.
var semconv = map[string]string{
	"daddr":        "network.peer.address",
	"dport":        "network.peer.port",
	"saddr":        "network.local.address",
	"sport":        "network.local.port",
	"pid":          "process.pid",
	"comm":         "process.executable.name",
	"container_id": "container.id",
	"runtime":      "container.runtime",
	"pod":          "k8s.pod.name",
	"namespace":    "k8s.namespace.name",
	"container":    "k8s.container.name",
	"dns_name":     "dns.question.name",
}

// Prefix is put before the fields that have no semantic-convention name.
const Prefix = "socktrace."

// AttrName is the log attribute a top-level NDJSON field becomes.
func AttrName(field string) string {
	if n, ok := semconv[field]; ok {
		return n
	}
	return Prefix + field
}

// severity of a record: what needs a look is a warning. sub is the
// record's kind within its type: an alert's "alert", a recording's
// "status".
func severity(typ, sub string) (log.Severity, string) {
	switch typ {
	case "recording":
		if sub == "paused" {
			return log.SeverityWarn, "WARN"
		}
		return log.SeverityInfo, "INFO"
	case "alert":
		switch sub {
		case "recovered", "listen-recovered":
			return log.SeverityInfo, "INFO"
		}
		return log.SeverityWarn, "WARN"
	case "lost", "skipped":
		return log.SeverityWarn, "WARN"
	}
	return log.SeverityInfo, "INFO"
}

// Convert turns one NDJSON line of the agent into a log record: the
// record's type as its event name, its time as the timestamp, its fields
// as attributes (nested objects flattened with dots, nulls left out),
// the line itself as the body.
func Convert(line []byte) (log.Record, error) {
	var r log.Record
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return r, fmt.Errorf("not a JSON object: %w", err)
	}
	typ, _ := m["type"].(string)
	sub, _ := m["alert"].(string)
	if typ == "recording" {
		sub, _ = m["status"].(string)
	}
	r.SetEventName(typ)
	sev, text := severity(typ, sub)
	r.SetSeverity(sev)
	r.SetSeverityText(text)
	r.SetBody(log.StringValue(string(line)))
	if s, ok := m["time"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			r.SetTimestamp(t)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "type" && k != "time" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]log.KeyValue, 0, len(keys)+4)
	for _, k := range keys {
		attrs = appendAttr(attrs, AttrName(k), m[k])
	}
	r.AddAttributes(attrs...)
	return r, nil
}

// appendAttr adds v under name; objects become one attribute per field.
func appendAttr(attrs []log.KeyValue, name string, v any) []log.KeyValue {
	switch v := v.(type) {
	case nil:
		return attrs
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			attrs = appendAttr(attrs, name+"."+k, v[k])
		}
		return attrs
	}
	return append(attrs, log.KeyValue{Key: name, Value: value(v)})
}

func value(v any) log.Value {
	switch v := v.(type) {
	case string:
		return log.StringValue(v)
	case bool:
		return log.BoolValue(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return log.Int64Value(i)
		}
		f, _ := v.Float64()
		return log.Float64Value(f)
	case []any:
		vs := make([]log.Value, 0, len(v))
		for _, e := range v {
			vs = append(vs, value(e))
		}
		return log.SliceValue(vs...)
	case map[string]any:
		kvs := make([]log.KeyValue, 0, len(v))
		for k, e := range v {
			kvs = append(kvs, log.KeyValue{Key: k, Value: value(e)})
		}
		sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
		return log.MapValue(kvs...)
	case nil:
		return log.Value{}
	}
	return log.StringValue(fmt.Sprint(v))
}
