// Command socktrace shows the life of every TCP socket on a Linux host:
// each state transition as it happens, from the kernel's
// inet_sock_set_state tracepoint.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "socktrace: %v\n", err)
		os.Exit(1)
	}
}
