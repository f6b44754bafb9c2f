package pipeline

import (
	"fmt"
	"os"

	"github.com/socktrace/socktrace/internal/owner/owners"
	"github.com/socktrace/socktrace/internal/privs"
)

// checkPrivileges fails when a capability the run cannot do without is
// missing, and warns, one line each, of those whose absence only makes
// the output partial (no owners, namespaces not listed or not checked).
func checkPrivileges(o *Options, live bool) error {
	var purposes []privs.Purpose
	if !owners.IteratorLikely() { // else the kernel finds the owners
		purposes = append(purposes, privs.Owners)
	}
	switch o.Netns {
	case "":
	case "all":
		purposes = append(purposes, privs.AllNetns)
	default:
		if o.Snapshot || live {
			purposes = append(purposes, privs.Netns)
		}
	}
	if err := privs.Require(purposes...); err != nil {
		return err
	}
	privs.Warn(os.Stderr, purposes...)
	if live && o.Netns == "" {
		// Transitions come from every namespace; checking the sockets
		// of the others against the kernel means entering them.
		if missing := privs.Missing(privs.Netns); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "socktrace: without %s, sockets of other network namespaces are not checked against the kernel after losses (run as root, or grant %s)\n",
				privs.Join(missing), privs.Join(missing))
		}
	}
	return nil
}
