package main

// The DaemonSet's image, built from deploy/kubernetes/Dockerfile with
// podman (no registry), run as deploy/kubernetes/daemonset.yaml says,
// beside real podman containers and a host process.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/socktrace/socktrace/internal/privs"
	"github.com/socktrace/socktrace/internal/testkit/k8smanifest"
	"github.com/socktrace/socktrace/internal/testkit/promtest"
	"github.com/socktrace/socktrace/internal/testkit/testnet"
)

const (
	daemonSetManifest = "../../deploy/kubernetes/daemonset.yaml"
	agentDockerfile   = "../../deploy/kubernetes/Dockerfile"
)

// podmanServerEnv makes the test binary the serving container's process
// (see TestMain): "A,B" accepts and closes connections on A, and listens
// on B with a backlog of 1, never accepting, its queue filled by
// connections of its own.
const podmanServerEnv = "SOCKTRACE_TEST_PODMAN_SERVER"

// podmanHeld keeps podmanServer's connections from the collector.
var podmanHeld []net.Conn

func podmanServer(spec string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "podman server:", err)
		os.Exit(1)
	}
	serve, full, ok := strings.Cut(spec, ",")
	if !ok {
		fail(fmt.Errorf("want ADDR,ADDR, got %q", spec))
	}
	ap, err := netip.ParseAddrPort(full)
	if err != nil {
		fail(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fail(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		fail(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		fail(err)
	}
	for range 2 { // a backlog of 1 holds 2
		c, err := net.Dial("tcp4", full)
		if err != nil {
			fail(err)
		}
		podmanHeld = append(podmanHeld, c)
	}
	ln, err := net.Listen("tcp4", serve)
	if err != nil {
		fail(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		c.Close()
	}
}

// podman runs podman as this machine needs it (NOTES.md): runc (crun
// refuses a hybrid cgroup host), cgroupfs, events to a file, storage of
// the test's own, and rlimits root may set without CAP_SYS_RESOURCE.
type podman struct {
	dir    string   // the test's storage, run and temporary directories
	global []string // podman's flags before the command
	ids    []string // containers started
	before podmanBefore
}

// podmanLeftovers are what podman makes outside its --root, --runroot
// and --tmpdir whatever it is told.
var podmanLeftovers = []string{"/var/lib/containers", "/run/containers", "/run/libpod", "/etc/containers/networks"}

// newPodman gives the test a podman of its own; when the test ends, all
// it made is removed (containers, images, storage and its mounts, the
// libpod_parent cgroups, the directories podman makes on its own), and
// what could not be is an error.
func newPodman(t *testing.T) *podman {
	t.Helper()
	testnet.RequireRoot(t)
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			testnet.Skip(t, bin+" is not installed: apt-get install podman runc (make deps installs them)")
		}
	}
	sweepStalePodman(t)
	dir, err := os.MkdirTemp("", fmt.Sprintf("socktrace-podman-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	p := podmanIn(dir)
	for _, d := range podmanLeftovers {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			p.before.Absent = append(p.before.Absent, d)
		}
	}
	p.before.Parents = libpodParents()
	p.save(t)
	t.Cleanup(func() { p.cleanup(t) })
	return p
}

// podmanBefore is what was there before the test's podman ran: what
// podman then makes outside its directories that was absent, the
// libpod_parent cgroups that existed, and the host directories the test
// made (hostPath volumes of type DirectoryOrCreate).
type podmanBefore struct {
	Absent, Parents, Created []string
}

// save writes p.before in p's directory, for a later run's sweep should
// this one die before its cleanup.
func (p *podman) save(t *testing.T) {
	t.Helper()
	b, err := json.Marshal(p.before)
	if err == nil {
		err = os.WriteFile(filepath.Join(p.dir, podmanBeforeFile), b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// mkdirHost makes a host directory that the test's cleanup removes.
func (p *podman) mkdirHost(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.before.Created = append(p.before.Created, dir)
	p.save(t)
}

const podmanBeforeFile = "before.json"

// podmanIn is a podman whose storage, run and temporary directories are
// in dir.
func podmanIn(dir string) *podman {
	return &podman{dir: dir, global: []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--runtime", "runc", "--cgroup-manager=cgroupfs", "--events-backend=file",
	}}
}

// sweepStalePodman removes the containers, images, mounts and storage
// that a run of this test left when it died before its cleanup (a
// -timeout panic runs none): those of test processes that are gone.
func sweepStalePodman(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "socktrace-podman-*-*"))
	for _, d := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "socktrace-podman-"), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || unix.Kill(pid, 0) != unix.ESRCH {
			continue // not such a directory, or its test still runs
		}
		t.Logf("removing what a run of this test that died (pid %d) left in %s", pid, d)
		stale := podmanIn(d)
		if b, err := os.ReadFile(filepath.Join(d, podmanBeforeFile)); err == nil {
			json.Unmarshal(b, &stale.before)
		}
		stale.cleanup(t)
	}
}

func (p *podman) command(args ...string) *exec.Cmd {
	return exec.Command("podman", append(slices.Clone(p.global), args...)...)
}

// run runs a podman command to its end and returns its stdout.
func (p *podman) run(t *testing.T, args ...string) string {
	t.Helper()
	c := p.command(args...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// start starts a container (podman run -d) named name and returns its id.
func (p *podman) start(t *testing.T, name string, args ...string) string {
	t.Helper()
	run := append([]string{"run", "-d", "--name", name, "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"}, args...)
	id := p.run(t, run...)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("podman run printed %q, not a container id", id)
	}
	p.ids = append(p.ids, id)
	return id
}

// pid is a running container's process, as the host sees it.
func (p *podman) pid(t *testing.T, id string) int {
	t.Helper()
	pid, err := strconv.Atoi(p.run(t, "inspect", "--format", "{{.State.Pid}}", id))
	if err != nil || pid <= 0 {
		t.Fatalf("container %.12s has no process (%v): logs:\n%s", id, err, p.logs(id))
	}
	return pid
}

// logs is what a container printed, for failure messages.
func (p *podman) logs(id string) string {
	out, _ := p.command("logs", id).CombinedOutput()
	return string(out)
}

// build builds an image from dockerfile in the context directory.
func (p *podman) build(t *testing.T, dockerfile, context, tag string) {
	t.Helper()
	p.run(t, "build", "--pull=never", "-f", dockerfile, "-t", tag, context)
}

// cleanup removes all that the test's podman, and the test for it, made.
func (p *podman) cleanup(t *testing.T) {
	before := p.before
	p.remove(t)
	for _, d := range before.Absent {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	for i := len(before.Created) - 1; i >= 0; i-- {
		if err := os.Remove(before.Created[i]); err != nil && !os.IsNotExist(err) {
			t.Errorf("cleanup: %v", err)
		}
	}
	// cgroupfs: podman leaves libpod_parent (with conmon's cgroup and
	// emptied container cgroups) in every hierarchy. Remove what this test
	// made: the containers', and libpod_parent itself where it was not
	// there before.
	for _, parent := range libpodParents() {
		var dirs []string
		if slices.Contains(before.Parents, parent) {
			for _, id := range p.ids {
				dirs = append(dirs, filepath.Join(parent, "libpod-"+id))
			}
		} else {
			filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && err != unix.ENOENT {
				t.Errorf("cleanup: rmdir %s: %v", dirs[i], err)
			}
		}
	}
}

// remove removes the containers and images, then the storage's mounts
// and directories.
func (p *podman) remove(t *testing.T) {
	for _, args := range [][]string{{"rm", "-a", "-f", "-t", "0"}, {"rmi", "-a", "-f"}} {
		if out, err := p.command(args...).CombinedOutput(); err != nil {
			t.Errorf("cleanup: podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The storage's own mounts (overlay), deepest first.
	mounts := mountsUnder(t, p.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: umount %s: %v", mounts[i], err)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if left := mountsUnder(t, p.dir); len(left) > 0 {
		t.Errorf("cleanup: mounts left: %v", left)
	}
}

// libpodParents are the libpod_parent cgroups of podman's cgroupfs
// manager: one in each v1 hierarchy and the v2 one (hybrid), or one.
func libpodParents() []string {
	v1, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
	v2, _ := filepath.Glob("/sys/fs/cgroup/libpod_parent")
	return append(v1, v2...)
}

// mountsUnder lists the mount points at or below dir, outermost first.
func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// podmanRunOf is the arguments of `podman run` that run a pod's one
// container as the kubelet would: its args, capabilities, user, read-only
// root, host PID namespace, host paths, environment and limits, read
// from the manifest. A field it cannot honour fails the test, so that the
// manifest cannot promise what this test does not run. mkdir makes the
// missing host directories of DirectoryOrCreate volumes.
func podmanRunOf(t *testing.T, pod corev1.PodSpec, mkdir func(string)) []string {
	t.Helper()
	if len(pod.Containers) != 1 || len(pod.InitContainers) > 0 {
		t.Fatalf("the pod has %d containers and %d init containers: this test runs one", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	var args []string
	add := func(a ...string) { args = append(args, a...) }
	if pod.HostPID {
		add("--pid=host")
	}
	if pod.HostIPC {
		add("--ipc=host")
	}
	if pod.HostNetwork {
		add("--network=host")
	} else {
		// The pod's own namespace; no CNI here, so lo only, which is
		// where the probes and the scrape below reach it.
		add("--network=none")
	}
	if pod.TerminationGracePeriodSeconds != nil {
		add("--stop-timeout", strconv.FormatInt(*pod.TerminationGracePeriodSeconds, 10))
	}
	switch c.ImagePullPolicy {
	case corev1.PullIfNotPresent:
		add("--pull=missing")
	case corev1.PullNever:
		add("--pull=never")
	default:
		t.Fatalf("imagePullPolicy %q: there is no registry here", c.ImagePullPolicy)
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			g := int64(0)
			if sc.RunAsGroup != nil {
				g = *sc.RunAsGroup
			}
			add("--user", fmt.Sprintf("%d:%d", *sc.RunAsUser, g))
		}
		if sc.Privileged != nil && *sc.Privileged {
			add("--privileged")
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			add("--security-opt", "no-new-privileges")
		}
		if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			// Kubernetes mounts no tmpfs on /tmp, /run: nor does this.
			add("--read-only", "--read-only-tmpfs=false")
		}
		if caps := sc.Capabilities; caps != nil {
			for _, d := range caps.Drop {
				add("--cap-drop", string(d))
			}
			for _, a := range caps.Add {
				add("--cap-add", string(a))
			}
		}
		if sp := sc.SeccompProfile; sp != nil {
			switch sp.Type {
			case corev1.SeccompProfileTypeRuntimeDefault: // podman's default profile
			case corev1.SeccompProfileTypeUnconfined:
				add("--security-opt", "seccomp=unconfined")
			default:
				t.Fatalf("seccompProfile %s: not run by this test", sp.Type)
			}
		}
		if ap := sc.AppArmorProfile; ap != nil {
			switch ap.Type {
			case corev1.AppArmorProfileTypeRuntimeDefault:
			case corev1.AppArmorProfileTypeUnconfined:
				add("--security-opt", "apparmor=unconfined")
			default:
				t.Fatalf("appArmorProfile %s: not run by this test", ap.Type)
			}
		}
		if sc.SELinuxOptions != nil || sc.ProcMount != nil || sc.WindowsOptions != nil {
			t.Fatalf("securityContext %+v: a field this test does not run", sc)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s: valueFrom is not run by this test", e.Name)
		}
		add("--env", e.Name+"="+e.Value)
	}
	if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		add("--memory", strconv.FormatInt(m.Value(), 10))
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		add("--cpus", strconv.FormatFloat(float64(cpu.MilliValue())/1000, 'f', 3, 64))
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok || v.HostPath == nil {
			t.Fatalf("volume mount %s: not a hostPath volume, which is all this test runs", vm.Name)
		}
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			t.Fatalf("volume mount %s: subPath is not run by this test", vm.Name)
		}
		hp := v.HostPath
		if _, err := os.Stat(hp.Path); os.IsNotExist(err) {
			if hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
				t.Fatalf("hostPath %s of volume %s does not exist here", hp.Path, v.Name)
			}
			mkdir(hp.Path)
		}
		opts := []string{"rw"}
		if vm.ReadOnly {
			opts[0] = "ro"
		}
		switch p := vm.MountPropagation; {
		case p == nil || *p == corev1.MountPropagationNone:
			opts = append(opts, "rprivate")
		case *p == corev1.MountPropagationHostToContainer:
			opts = append(opts, "rslave")
		case *p == corev1.MountPropagationBidirectional:
			opts = append(opts, "rshared")
		}
		add("--volume", hp.Path+":"+vm.MountPath+":"+strings.Join(opts, ","))
	}
	if len(c.Command) > 0 {
		add("--entrypoint", c.Command[0])
		if len(c.Command) > 1 {
			t.Fatalf("command %q: more than the entrypoint is not run by this test", c.Command)
		}
	}
	add(c.Image)
	add(c.Args...)
	return args
}

// probeURL is where a probe's httpGet asks, from inside the pod.
func probeURL(t *testing.T, c corev1.Container, p *corev1.Probe) string {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("container %s: no httpGet probe", c.Name)
	}
	port := p.HTTPGet.Port.IntValue()
	if name := p.HTTPGet.Port.StrVal; name != "" {
		for _, cp := range c.Ports {
			if cp.Name == name {
				port = int(cp.ContainerPort)
			}
		}
	}
	if port == 0 {
		t.Fatalf("probe port %s: not a port of the container", p.HTTPGet.Port.String())
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, p.HTTPGet.Path)
}

// clientInNetns is an HTTP client whose connections are made in the
// network namespace at path (as nsenter --net would).
func clientInNetns(t *testing.T, path string) *http.Client {
	t.Helper()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ch <- result{err: err}
				return
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				ch <- result{err: fmt.Errorf("setns %s: %w", path, err)}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// getURL fetches url and returns its status and body.
func getURL(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// sampleLabels parses the labels of a sample key of scrape's map.
func sampleLabels(key string) (name string, labels map[string]string) {
	name, rest, _ := strings.Cut(key, "{")
	labels = map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(rest, -1) {
		labels[m[1]] = m[2]
	}
	return name, labels
}

// sampleWith is the first sample of metric with all of want's labels:
// its value and labels, and whether there is one.
func sampleWith(m map[string]float64, metric string, want map[string]string) (float64, map[string]string, bool) {
	for k, v := range m {
		name, labels := sampleLabels(k)
		if name != metric {
			continue
		}
		ok := true
		for l, w := range want {
			if labels[l] != w {
				ok = false
			}
		}
		if ok {
			return v, labels, true
		}
	}
	return 0, nil, false
}

// manifestCaps are the effective capabilities the manifest's container
// must end up with.
func manifestCaps(t *testing.T, sc *corev1.SecurityContext) privs.Set {
	t.Helper()
	byName := map[string]privs.Cap{"BPF": privs.BPF, "PERFMON": privs.Perfmon, "SYS_ADMIN": privs.SysAdmin,
		"SYS_PTRACE": privs.SysPtrace, "DAC_READ_SEARCH": privs.DacReadSearch, "SYS_RESOURCE": privs.SysResource,
		"DAC_OVERRIDE": privs.DacOverride, "NET_ADMIN": privs.NetAdmin}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("the manifest's container does not drop ALL capabilities: this test checks exactly those it adds")
	}
	var caps []privs.Cap
	for _, a := range sc.Capabilities.Add {
		c, ok := byName[string(a)]
		if !ok {
			t.Fatalf("capability %s: add it to this test's table", a)
		}
		caps = append(caps, c)
	}
	return privs.Of(caps...)
}

// TestDaemonSetImageUnderPodman: the image of deploy/kubernetes/Dockerfile,
// built with podman from the static binary, runs as daemonset.yaml says
// (read from it), beside a serving podman container, a podman container
// connecting to a port whose SYNs are dropped, and a host process. Its
// probe's endpoint answers; its /metrics, fetched inside its network
// namespace as Prometheus would, name the failing destination with the
// connecting container's identity, and the full listeners that the
// serving container and the host process had before the agent started.
func TestDaemonSetImageUnderPodman(t *testing.T) {
	m, err := k8smanifest.ReadFile(daemonSetManifest)
	if err != nil {
		t.Fatal(err)
	}
	pod := m.DaemonSet.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the DaemonSet's pod has %d containers: this test runs one", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	pm := newPodman(t)
	if !slices.Contains(ctr.Args, "--workload-labels") {
		t.Fatalf("the manifest's args %q lack --workload-labels, whose labels this test checks", ctr.Args)
	}
	wantCaps := manifestCaps(t, ctr.SecurityContext)

	// The images: the agent's from the repository's Dockerfile and a
	// static binary, in a context holding only that; the workloads' from
	// this test binary, built static too.
	// (In the podman's directory: a sweep removes them too.)
	agentCtx, workCtx := filepath.Join(pm.dir, "build", "agent"), filepath.Join(pm.dir, "build", "workload")
	for _, b := range []struct {
		out  string
		args []string
	}{
		{filepath.Join(agentCtx, "bin", "socktrace"), []string{"build", "-trimpath"}},
		{filepath.Join(workCtx, "workload"), []string{"test", "-c"}},
	} {
		c := exec.Command("go", append(b.args, "-o", b.out, ".")...)
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("CGO_ENABLED=0 go %s: %v\n%s", strings.Join(b.args, " "), err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(workCtx, "Dockerfile"), []byte("FROM scratch\nCOPY workload /workload\nENTRYPOINT [\"/workload\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pm.build(t, agentDockerfile, agentCtx, ctr.Image)
	pm.build(t, filepath.Join(workCtx, "Dockerfile"), workCtx, "socktrace-test-workload:latest")

	// The workloads share a namespace of the test's, where SYNs to 9092
	// and 9093 are dropped: the serving container, the connecting one,
	// and a host process connecting too and holding a full listener.
	s := newStory(t)
	inNS := "--network=ns:" + s.ns.Path()
	server := pm.start(t, "serve", inNS, "--env", podmanServerEnv+"=127.0.0.1:9001,127.0.0.1:9002", "socktrace-test-workload:latest")
	client := pm.start(t, "connect", inNS, "--env", clientEnv+"="+s.dropped+",127.0.0.1:9001", "socktrace-test-workload:latest")
	// The failing gauge is one series a destination: the host process
	// fails on a port of its own.
	nft(t, s.ns, "table inet blackhole2 {\n chain in {\n  type filter hook input priority 0;\n  tcp dport 9093 drop\n }\n}\n")
	startClient(t, s.ns, "127.0.0.1:9093")
	hostFull := s.ns.FullListener(t, 1)
	// Served: the serving container filled its full listener first.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := s.ns.Do(func() error {
			c, err := net.Dial("tcp4", "127.0.0.1:9001")
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the serving container does not serve 127.0.0.1:9001: %v; logs:\n%s", err, pm.logs(server))
		}
	}

	run := podmanRunOf(t, pod, func(dir string) { pm.mkdirHost(t, dir) })
	t.Logf("the DaemonSet's container: podman run %s", strings.Join(run, " "))
	agent := pm.start(t, "socktrace-agent", run...)
	pid := pm.pid(t, agent)

	// It runs as the manifest says: those capabilities, no privilege
	// escalation, a read-only root, the host's PID namespace.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			if got, err := privs.Parse(hex); err != nil || got != wantCaps {
				t.Errorf("the agent's effective capabilities %s (%v), want %x", hex, err, uint64(wantCaps))
			}
		}
		if v, ok := strings.CutPrefix(l, "NoNewPrivs:\t"); ok && v != "1" {
			t.Errorf("NoNewPrivs %s: allowPrivilegeEscalation: false not applied", v)
		}
	}
	hostPID, _ := os.Readlink("/proc/self/ns/pid")
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != hostPID {
		t.Errorf("the agent's PID namespace %s (%v), want the host's %s (hostPID)", ns, err, hostPID)
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	readOnly := map[string]bool{}
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 5 {
			readOnly[f[4]] = slices.Contains(strings.Split(f[5], ","), "ro")
		}
	}
	for _, mp := range []string{"/", "/host"} {
		if !readOnly[mp] {
			t.Errorf("%s in the agent's container is not a read-only mount (mountinfo:\n%s)", mp, mounts)
		}
	}

	// The probe's endpoint, then /metrics where the annotations say,
	// both from inside the pod's network namespace.
	hc := clientInNetns(t, fmt.Sprintf("/proc/%d/ns/net", pid))
	healthz := probeURL(t, ctr, ctr.ReadinessProbe)
	if live := probeURL(t, ctr, ctr.LivenessProbe); live != healthz {
		t.Errorf("liveness probe %s, readiness %s: this test asks one", live, healthz)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, body, err := getURL(hc, healthz)
		if err == nil && code == 200 && strings.HasPrefix(body, "ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s in the agent's namespace: %d %q %v; agent logs:\n%s", healthz, code, body, err, pm.logs(agent))
		}
	}
	ann := m.DaemonSet.Spec.Template.Annotations
	metricsURL := fmt.Sprintf("http://127.0.0.1:%s%s", ann["prometheus.io/port"], ann["prometheus.io/path"])

	comm := processComm(t)
	type sample struct {
		what, metric string
		labels       map[string]string
	}
	clientFailing := sample{"the connecting container's failing destination", "socktrace_destination_failing",
		map[string]string{"daddr": "127.0.0.1", "dport": "9092", "comm": "workload", "container": client, "namespace": "", "pod": "", "unit": ""}}
	want := []sample{
		clientFailing,
		// In the same namespace as the container's: the host's other
		// tests have socktrace.test connecting to 9092 and 9093 too.
		{"the host process's failing destination", "socktrace_destination_failing",
			map[string]string{"daddr": "127.0.0.1", "dport": "9093", "comm": comm, "container": "", "pod": ""}},
		{"the serving container's full listener, from before the agent", "socktrace_listen_queue_full",
			map[string]string{"sport": "9002", "comm": "workload", "container": server, "namespace": "", "pod": "", "unit": ""}},
		{"the host process's full listener, from before the agent", "socktrace_listen_queue_full",
			map[string]string{"sport": strconv.Itoa(hostFull), "comm": comm, "container": "", "pod": ""}},
	}
	// Full listeners are measured at each reconciliation: the first
	// comes --reconcile-every (30s by default) after the start.
	var missing []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		got := scrape(t, hc, metricsURL)
		if _, l, ok := sampleWith(got, clientFailing.metric, clientFailing.labels); ok {
			want[1].labels["netns"] = l["netns"]
		}
		missing = missing[:0]
		for _, w := range want {
			if v, _, ok := sampleWith(got, w.metric, w.labels); !ok || v != 1 {
				l := maps.Clone(w.labels)
				l["__name__"] = w.metric
				missing = append(missing, w.what+": "+promtest.FormatLabels(l)+" 1")
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var have []string
			for k := range got {
				if strings.Contains(k, `dport="9092"`) || strings.Contains(k, `dport="9093"`) || strings.Contains(k, `sport="9002"`) || strings.Contains(k, fmt.Sprintf(`sport="%d"`, hostFull)) {
					have = append(have, k)
				}
			}
			slices.Sort(have)
			t.Fatalf("not in /metrics after 60s:\n  %s\nhave, on those ports:\n  %s\nagent logs:\n%s", strings.Join(missing, "\n  "), strings.Join(have, "\n  "), pm.logs(agent))
		}
	}
}
