package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/socktrace/socktrace/vmtest/internal/cpio"
	"github.com/socktrace/socktrace/vmtest/internal/proto"
)

// testPackages are the packages whose tests run in the VMs: every package
// under internal/ that has tests, and the smoke test of the real binary.
// Not ./cmd/socktrace: its tests need go build, ss, nft, nsenter and bash.
var testPackages = []string{"./internal/...", "./vmtest/smoke"}

// hostOnly are test binaries that do not run in the VMs: what they test
// does not depend on the kernel, and what they need is not in the VM
// (promtest runs Debian's prometheus, a dynamically linked program).
var hostOnly = map[string]bool{"promtest.test": true}

// guestTimeout bounds one test binary inside the VM (seconds).
const guestTimeout = 600

// binaries are what the host builds once for every VM.
type binaries struct {
	init      string
	socktrace string
	tests     []string // *.test, sorted, the smoke test last
	run       string   // -test.run for every binary, or ""
}

// build compiles the init, socktrace and the test binaries, statically.
func build(ctx context.Context, dir string, logf func(string, ...any)) (*binaries, error) {
	os.RemoveAll(dir)
	testDir := filepath.Join(dir, "tests")
	if err := os.MkdirAll(testDir, 0o755); err != nil {
		return nil, err
	}
	b := &binaries{init: filepath.Join(dir, "init"), socktrace: filepath.Join(dir, "socktrace")}
	flags := []string{"-trimpath", "-ldflags=-s -w"}
	steps := [][]string{
		append(append([]string{"build"}, flags...), "-o", b.init, "./vmtest/init"),
		append(append([]string{"build"}, flags...), "-o", b.socktrace, "./cmd/socktrace"),
		append(append(append([]string{"test", "-c"}, flags...), "-o", testDir+"/"), testPackages...),
	}
	for _, args := range steps {
		logf("go %s", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, goTool(), args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	all, _ := filepath.Glob(filepath.Join(testDir, "*.test"))
	var tests []string
	for _, t := range all {
		if !hostOnly[filepath.Base(t)] {
			tests = append(tests, t)
		}
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("go test -c built no test binary")
	}
	sort.Slice(tests, func(i, j int) bool {
		si, sj := filepath.Base(tests[i]) == "smoke.test", filepath.Base(tests[j]) == "smoke.test"
		if si != sj {
			return sj
		}
		return tests[i] < tests[j]
	})
	b.tests = tests
	return b, nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go"
	}
	return "go"
}

// testName is a test binary's short name: events for events.test.
func testName(path string) string { return strings.TrimSuffix(filepath.Base(path), ".test") }

// plan is what the init of a VM runs: modules, then every test binary.
func (b *binaries) plan(k *Kernel) proto.Plan {
	var p proto.Plan
	for _, m := range k.Modules {
		p.Modules = append(p.Modules, "/lib/modules/"+m.Name+".ko")
	}
	for _, t := range b.tests {
		name := testName(t)
		args := []string{"-test.v", fmt.Sprintf("-test.timeout=%ds", guestTimeout-30)}
		if b.run != "" {
			args = append(args, "-test.run="+b.run)
		}
		p.Tests = append(p.Tests, proto.Test{
			Name: name,
			Path: "/tests/" + filepath.Base(t),
			Args: args,
			// Privileged tests fail rather than skip, as under make test.
			Env:     []string{"SOCKTRACE_REQUIRE_ROOT=1", "SOCKTRACE_BIN=/bin/socktrace", "SOCKTRACE_VM=1"},
			Dir:     "/tests",
			Timeout: guestTimeout,
		})
	}
	return p
}

// initramfs writes the VM's initramfs: the init, socktrace, the test
// binaries, the kernel's modules and the plan.
func (b *binaries) initramfs(path string, k *Kernel, plan proto.Plan) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := cpio.NewWriter(f)
	for _, d := range []string{"bin", "dev", "etc", "lib/modules", "proc", "root", "run", "sys", "tests", "tmp", "vmtest"} {
		if err := w.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	w.CharDev("dev/console", 0o600, 5, 1)
	w.File("init", 0o755, b.init)
	w.File("bin/socktrace", 0o755, b.socktrace)
	for _, t := range b.tests {
		w.File("tests/"+filepath.Base(t), 0o755, t)
	}
	for _, m := range k.Modules {
		w.Bytes("lib/modules/"+m.Name+".ko", 0o644, m.Data)
	}
	// Port names, as socktrace shows them on the host.
	if _, err := os.Stat("/etc/services"); err == nil {
		w.File("etc/services", 0o644, "/etc/services")
	}
	js, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return err
	}
	w.Bytes(strings.TrimPrefix(proto.PlanPath, "/"), 0o644, js)
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
