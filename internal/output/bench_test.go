package output

import (
	"testing"
	"time"
)

// benchSink is a flusher that counts what it is given and keeps nothing.
type benchSink struct{ n int64 }

func (s *benchSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *benchSink) Flush() error                { return nil }

// BenchmarkJSONTransition measures writing one transition as a JSON
// record (the -o json hot path), and, for comparison, as a table line.
func BenchmarkJSONTransition(b *testing.B) {
	tr := otTransition()
	sink := &benchSink{}
	j := NewJSON(sink)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Time = otTime.Add(time.Duration(i))
		if err := j.Transition(&tr); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(sink.n)/float64(b.N), "bytes/record")
}

// BenchmarkTableTransition is the same for the table (-n).
func BenchmarkTableTransition(b *testing.B) {
	tr := otTransition()
	sink := &benchSink{}
	t := NewTable(sink, sink, TableOptions{Numeric: true})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.Time = otTime.Add(time.Duration(i))
		if err := t.Transition(&tr); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(sink.n)/float64(b.N), "bytes/record")
}
