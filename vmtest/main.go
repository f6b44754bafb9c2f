// Command vmtest runs socktrace's privileged tests inside qemu VMs that
// boot Debian's own kernels (5.10, 6.1 and 6.12), so that every supported
// kernel line is proven, not just the host's.
//
// For each kernel it finds the newest linux-image-*-cloud-amd64 of its
// Debian release with apt (in a private apt directory), downloads and
// unpacks it once into a cache, builds an initramfs whose /init (package
// ./vmtest/init) loads the modules the tests need and runs the test
// binaries, boots it with qemu, and reads the results from the serial
// console. Run it from the repository root with `make vmtest`
// (KERNELS=6.1 for one). Settings, as flags or environment:
//
//	-kernels  KERNELS         series to test: 5.10,6.1,6.12 (default all)
//	-cache    VMTEST_CACHE    cache dir (default ~/.cache/socktrace-vmtest)
//	-out      VMTEST_OUT      console logs and build output (default bin/vmtest)
//	-accel    VMTEST_ACCEL    auto, tcg or kvm (auto: KVM only if a probe VM boots with it)
//	-timeout  VMTEST_TIMEOUT  per kernel (default 15m)
//	-refresh  VMTEST_REFRESH=1  look for newer kernels now (default: when the last look is a day old)
//	-offline  VMTEST_OFFLINE=1  use only what the cache has
//	-run      VMTEST_RUN      only the tests matching this -test.run pattern
//	-v        VMTEST_VERBOSE=1  copy every VM's console to stdout
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/vmtest/internal/debian"
	"github.com/socktrace/socktrace/vmtest/internal/proto"
)

func main() {
	os.Exit(run())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envBool(k string) bool {
	b, _ := strconv.ParseBool(os.Getenv(k))
	return b
}

func defaultCache() string {
	if d := os.Getenv("VMTEST_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "socktrace-vmtest")
	}
	return filepath.Join(os.TempDir(), "socktrace-vmtest")
}

type options struct {
	kernels  []Series
	cacheDir string
	outDir   string
	accel    string
	timeout  time.Duration
	refresh  bool
	offline  bool
	verbose  bool
	run      string
	memMiB   int
	cpus     int
}

func parseFlags() (*options, error) {
	o := &options{}
	kernels := flag.String("kernels", envOr("KERNELS", ""), "kernel series to test, comma or space separated (default all: 5.10,6.1,6.12)")
	flag.StringVar(&o.cacheDir, "cache", defaultCache(), "cache for packages and kernels")
	flag.StringVar(&o.outDir, "out", envOr("VMTEST_OUT", "bin/vmtest"), "directory for build output and console logs")
	flag.StringVar(&o.accel, "accel", envOr("VMTEST_ACCEL", "auto"), "auto, tcg or kvm")
	timeout := flag.String("timeout", envOr("VMTEST_TIMEOUT", "15m"), "time limit for each kernel's VM")
	flag.BoolVar(&o.refresh, "refresh", envBool("VMTEST_REFRESH"), "look for newer kernels even if the last look is recent")
	flag.BoolVar(&o.offline, "offline", envBool("VMTEST_OFFLINE"), "never use the network: only what the cache has")
	flag.BoolVar(&o.verbose, "v", envBool("VMTEST_VERBOSE"), "copy the VMs' consoles to stdout")
	flag.StringVar(&o.run, "run", envOr("VMTEST_RUN", ""), "run only the tests matching this pattern (as go test -run)")
	flag.IntVar(&o.memMiB, "mem", 1024, "VM memory in MiB")
	flag.IntVar(&o.cpus, "smp", 2, "VM CPUs")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	var err error
	if o.timeout, err = time.ParseDuration(*timeout); err != nil || o.timeout <= 0 {
		return nil, fmt.Errorf("bad timeout %q", *timeout)
	}
	switch o.accel {
	case "auto", "tcg", "kvm":
	default:
		return nil, fmt.Errorf("bad accel %q: use auto, tcg or kvm", o.accel)
	}
	names := strings.FieldsFunc(*kernels, func(r rune) bool { return r == ',' || r == ' ' })
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		o.kernels = allSeries
		return o, nil
	}
	for _, n := range names {
		found := false
		for _, s := range allSeries {
			if s.Name == n {
				o.kernels = append(o.kernels, s)
				found = true
			}
		}
		if !found {
			var known []string
			for _, s := range allSeries {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("unknown kernel %q: use %s", n, strings.Join(known, ", "))
		}
	}
	return o, nil
}

func logf(format string, args ...any) {
	fmt.Printf("vmtest: "+format+"\n", args...)
}

func run() int {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 2
	}
	if err := checkHost(o); err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()

	c := &cache{dir: o.cacheDir, refresh: o.refresh, offline: o.offline, ttl: 24 * time.Hour,
		mirrors: mirrors(), log: logf}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 2
	}
	logf("cache %s, mirrors %s and %s", c.dir, c.mirrors.Archive, c.mirrors.Security)
	var kernels []*Kernel
	for _, s := range o.kernels {
		k, err := c.prepare(ctx, s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmtest: %s: %v\n", s.Name, err)
			return 1
		}
		how := "from the cache"
		if k.Downloaded {
			how = fmt.Sprintf("downloaded and unpacked in %.1fs", k.Prepare.Seconds())
		}
		logf("%s: %s (%s), %s", s.Name, k.Package, k.Release, how)
		kernels = append(kernels, k)
	}

	buildStart := time.Now()
	bins, err := build(ctx, filepath.Join(o.outDir, "build"), logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		return 1
	}
	bins.run = o.run
	logf("built init, socktrace and %d test binaries in %.1fs", len(bins.tests), time.Since(buildStart).Seconds())

	accel := o.accel
	if accel == "auto" {
		accel = c.chooseAccel(ctx, o, bins, kernels[0])
	}
	cfg := vmConfig{accel: accel, memMiB: o.memMiB, cpus: o.cpus, timeout: o.timeout}
	if o.verbose {
		cfg.echo = os.Stdout
	}

	var runs []*kernelRun
	for _, k := range kernels {
		if ctx.Err() != nil {
			break
		}
		runs = append(runs, runKernel(ctx, cfg, o.outDir, bins, k))
	}
	report(os.Stdout, cfg, runs, time.Since(started))
	for _, r := range runs {
		if !r.res.pass() {
			return 1
		}
	}
	if len(runs) < len(kernels) {
		return 1
	}
	return 0
}

// kernelRun is one kernel's run, for the report.
type kernelRun struct {
	k     *Kernel
	res   *vmResult
	total time.Duration // prepare + initramfs + VM
}

func runKernel(ctx context.Context, cfg vmConfig, outDir string, bins *binaries, k *Kernel) *kernelRun {
	start := time.Now()
	name := k.Series.Name
	progress := func(s string) { fmt.Printf("vmtest %s: %s\n", name, s) }
	plan := bins.plan(k)
	initrd := filepath.Join(outDir, "initramfs-"+name+".cpio")
	logPath := filepath.Join(outDir, "console-"+name+".log")
	if err := bins.initramfs(initrd, k, plan); err != nil {
		return &kernelRun{k: k, res: &vmResult{QemuErr: err, Log: logPath}, total: k.Prepare + time.Since(start)}
	}
	progress(fmt.Sprintf("booting %s with qemu (%s, %d CPUs, %d MiB), console in %s", filepath.Base(k.Vmlinuz), cfg.accel, cfg.cpus, cfg.memMiB, logPath))
	res := runVM(ctx, cfg, k.Vmlinuz, initrd, logPath, plan, progress)
	// A kernel that dies before our init runs says nothing of socktrace
	// (seen: 6.12 oopsing in an early initcall under qemu's software
	// emulation, once in several boots): boot it again, twice at most,
	// keeping the console of each try.
	for try := 2; !res.Booted && !res.TimedOut && ctx.Err() == nil && try <= 3; try++ {
		kept := fmt.Sprintf("%s.try%d", logPath, try-1)
		os.Rename(logPath, kept)
		progress(fmt.Sprintf("the kernel did not reach the init (its console: %s): booting it again, try %d of 3", kept, try))
		res = runVM(ctx, cfg, k.Vmlinuz, initrd, logPath, plan, progress)
	}
	switch {
	case res.TimedOut:
		progress(fmt.Sprintf("TIMEOUT after %v: qemu killed", cfg.timeout))
	case res.QemuErr != nil && !res.Done:
		progress(fmt.Sprintf("the VM ended before the tests did: %v", res.QemuErr))
	case !res.Done:
		progress("the VM ended before the tests did")
	}
	return &kernelRun{k: k, res: res, total: k.Prepare + time.Since(start)}
}

// chooseAccel uses KVM only if /dev/kvm opens and a probe VM really boots
// with it (on some hosts, nested ones especially, /dev/kvm is there but a
// guest hangs). The answer is cached per host kernel and qemu version.
func (c *cache) chooseAccel(ctx context.Context, o *options, bins *binaries, k *Kernel) string {
	if !kvmUsable() {
		return "tcg"
	}
	key := hostKey()
	probeFile := filepath.Join(c.dir, "kvm-probe")
	if b, err := os.ReadFile(probeFile); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 && f[0] == key {
			logf("KVM %s on this host (cached probe result; VMTEST_ACCEL=tcg or kvm to choose)", map[bool]string{true: "works", false: "does not work"}[f[1] == "kvm"])
			return f[1]
		}
	}
	logf("/dev/kvm is there: checking that a VM boots with it (at most 30s)")
	initrd := filepath.Join(o.outDir, "initramfs-kvm-probe.cpio")
	empty := proto.Plan{}
	accel := "tcg"
	if err := bins.initramfs(initrd, &Kernel{}, empty); err == nil {
		cfg := vmConfig{accel: "kvm", memMiB: 512, cpus: 1, timeout: 30 * time.Second}
		res := runVM(ctx, cfg, k.Vmlinuz, initrd, filepath.Join(o.outDir, "console-kvm-probe.log"), empty, func(string) {})
		if res.Done {
			accel = "kvm"
			logf("KVM probe: the VM booted with KVM in %.1fs", res.Wall.Seconds())
		} else {
			why := "it hung"
			if !res.TimedOut {
				why = fmt.Sprintf("qemu ended after %.1fs (%v)", res.Wall.Seconds(), res.QemuErr)
			}
			logf("KVM probe: the VM did not boot with KVM, %s: using TCG (log in %s)", why, res.Log)
		}
	}
	os.WriteFile(probeFile, []byte(key+" "+accel+"\n"), 0o644)
	return accel
}

// hostKey names what decides whether KVM works: the host kernel and qemu.
func hostKey() string {
	var u unix.Utsname
	unix.Uname(&u)
	rel := unix.ByteSliceToString(u.Release[:])
	out, _ := exec.Command("qemu-system-x86_64", "--version").Output()
	ver := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	q := "qemu"
	if len(ver) >= 4 {
		q += ver[3]
	}
	return rel + "/" + q
}

func mirrors() debian.Mirrors {
	m := debian.SystemMirrors("/etc/apt")
	if v := os.Getenv("VMTEST_MIRROR"); v != "" {
		m.Archive = v
	}
	if v := os.Getenv("VMTEST_SECURITY_MIRROR"); v != "" {
		m.Security = v
	}
	return m
}

// checkHost finds the tools and the repository.
func checkHost(o *options) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return fmt.Errorf("run me from the socktrace repository's root (make vmtest)")
	}
	tools := []string{"qemu-system-x86_64", "dpkg-deb"}
	if !o.offline {
		tools = append(tools, "apt-get", "apt-cache")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: install qemu-system-x86 and xz-utils (make vmtest does)", t)
		}
	}
	return nil
}
