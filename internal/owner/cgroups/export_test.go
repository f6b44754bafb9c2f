package cgroups

// MountPrivate is mountPrivate, for tests.
var MountPrivate = mountPrivate

// NewAt returns a Resolver of the hierarchy at mount, for tests.
func NewAt(mount string) *Resolver {
	r := New("")
	r.mount = mount
	return r
}
