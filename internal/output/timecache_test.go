package output

import (
	"testing"
	"time"
)

// TestTimeCache: the cache formats exactly as TimeLayout, across second,
// day and year boundaries, in any order, and for times of any zone.
func TestTimeCache(t *testing.T) {
	var c timeCache
	base := time.Date(2024, 12, 31, 23, 59, 58, 999999999, time.UTC)
	zone := time.FixedZone("x", 5*3600+1800)
	times := []time.Time{base, base.Add(1), base.Add(time.Nanosecond * 2), base.Add(time.Second), base.Add(-time.Hour),
		base.Add(2 * time.Second), base.In(zone), time.Unix(0, 0), time.Unix(1, 7), time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 5, time.UTC), time.Unix(1e9, 123)}
	for i := 0; i < 1000; i++ {
		times = append(times, base.Add(time.Duration(i)*7919*time.Microsecond))
	}
	for _, tm := range times {
		got := string(c.append(nil, tm))
		if want := tm.UTC().Format(TimeLayout); got != want {
			t.Fatalf("%v: got %s, want %s", tm, got, want)
		}
	}
}

// TestTimeCacheLeadAfter: with text before and after, the same time
// between them, in and out of the years the cache formats itself.
func TestTimeCacheLeadAfter(t *testing.T) {
	c := timeCache{lead: `{"a":"`, after: `","b":`}
	for _, tm := range []time.Time{time.Unix(1e9, 123), time.Unix(1e9, 456), time.Unix(1e9+1, 0),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(5, 5)} {
		got := string(c.append([]byte("x"), tm))
		if want := `x{"a":"` + tm.UTC().Format(TimeLayout) + `","b":`; got != want {
			t.Fatalf("%v: got %s, want %s", tm, got, want)
		}
	}
}
