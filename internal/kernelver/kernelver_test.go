package kernelver

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.1.0-57-cloud-amd64", 6, 1, true},
		{"5.10.0-46-cloud-amd64", 5, 10, true},
		{"6.18.44-fc-v669", 6, 18, true},
		{"6.12.118+deb13-cloud-amd64", 6, 12, true},
		{"garbage", 0, 0, false},
	} {
		a, b, err := Parse(tc.in)
		if (err == nil) != tc.ok || a != tc.major || b != tc.minor {
			t.Errorf("Parse(%q) = %d.%d %v", tc.in, a, b, err)
		}
	}
	if a, _, err := Running(); err != nil || a < 4 {
		t.Errorf("Running: %d %v", a, err)
	}
}
