// Package kernelver tells which Linux release runs: what a feature that
// no probe can show for sure (a recursion guard, a helper in a program
// type) is decided by.
package kernelver

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Running returns the running kernel's major and minor version.
func Running() (major, minor int, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, fmt.Errorf("uname: %w", err)
	}
	return Parse(unix.ByteSliceToString(u.Release[:]))
}

// Parse reads the major and minor version of a release such as
// "6.1.0-57-cloud-amd64".
func Parse(release string) (major, minor int, err error) {
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return major, minor, nil
}

// AtLeast says whether the running kernel is major.minor or later (false
// if it cannot tell).
func AtLeast(major, minor int) bool {
	a, b, err := Running()
	return err == nil && (a > major || a == major && b >= minor)
}
