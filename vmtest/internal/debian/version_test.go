package debian

import (
	"os/exec"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.0-0", 0},
		{"6.1.192-2", "6.1.190-1", 1},
		{"6.1.99-1", "6.1.100-1", -1},
		{"6.12.118-1", "6.12.117-1~deb12u1", 1},
		{"6.12.117-1~deb12u1", "6.12.117-1", -1},
		{"1.0~rc1", "1.0", -1},
		{"1.0~~", "1.0~", -1},
		{"1.0a", "1.0", 1},
		{"1.0+b1", "1.0a", 1}, // letters sort before other characters
		{"1:1.0", "2.0", 1},
		{"0:2.0", "2.0", 0},
		{"5.10.262-1", "5.10.99-1", 1},
		{"1.00010", "1.9", 1},
		{"1.0-1", "1.0-1.1", -1},
	} {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
		// dpkg, where there is one, must agree.
		if _, err := exec.LookPath("dpkg"); err == nil {
			op := map[int]string{-1: "lt", 0: "eq", 1: "gt"}[tt.want]
			if err := exec.Command("dpkg", "--compare-versions", tt.a, op, tt.b).Run(); err != nil {
				t.Errorf("dpkg disagrees: %s %s %s is false", tt.a, op, tt.b)
			}
		}
	}
}
