package main

// Pod names from a real container runtime: Debian's containerd, started
// by the test with a config, root, state and socket of its own, runs a
// pod sandbox and a container through its CRI API, as the kubelet's
// cgroupfs driver would ask; socktrace names the container's sockets
// from the CRI.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/socktrace/socktrace/internal/testkit/testnet"
	"github.com/socktrace/socktrace/internal/testkit/testpods"
)

// criImage names the image the test builds and imports: its /prog pauses
// (the sandbox's "pause" process) or, given "connect ADDR", connects to
// ADDR every 200ms and holds up to 20 connections open.
const criImage = "localhost/socktrace-test-cri:1"

const criProg = `package main

import (
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 || os.Args[1] != "connect" {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		return
	}
	var held []net.Conn
	for {
		if c, err := net.Dial("tcp", os.Args[2]); err == nil {
			held = append(held, c)
		}
		if len(held) > 20 {
			held[0].Close()
			held = held[1:]
		}
		time.Sleep(200 * time.Millisecond)
	}
}
`

// TestCRIPodNames: the container's connects carry pod, namespace and
// container as the CRI names them (not as the kubelet's logs, which the
// test fills with other names for the same pod and container), live,
// in --once and in the agent's labels.
func TestCRIPodNames(t *testing.T) {
	testnet.RequireRoot(t)
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			testnet.Skip(t, "needs "+bin+": apt-get install containerd runc (make deps installs them)")
		}
	}
	const uid = "6c0e9d1a-2b3c-4d5e-8f70-91a2b3c4d5e6"
	// What the kubelet's cgroupfs driver gives a BestEffort pod.
	parent := "/kubepods/besteffort/pod" + uid
	c := startContainerd(t, parent)

	// Something to connect to, on loopback: the pod shares the host's
	// network namespace.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { conn.Read(make([]byte, 1)); conn.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	pod := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "checkout-7d9f8b6c5-x2x4z", Namespace: "shop", Uid: uid},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: parent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}
	box := c.runPod(t, pod)
	ctrID := c.runContainer(t, box, pod, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "checkout"},
		Image:    &runtimeapi.ImageSpec{Image: criImage},
		Command:  []string{"/prog"},
		Args:     []string{"connect", fmt.Sprintf("127.0.0.1:%d", port)},
	})

	// The kubelet's logs name the same pod and container otherwise: the
	// CRI's names win.
	logs := t.TempDir()
	testpods.Write(t, logs, testpods.Pod{Namespace: "from-logs", Name: "not-this-pod", UID: uid,
		Containers: map[string]string{"not-this-container": ctrID}})
	want := map[string]any{"namespace": "shop", "pod": "checkout-7d9f8b6c5-x2x4z", "container": "checkout",
		"container_id": ctrID, "runtime": "containerd"} // the cgroupfs path has a bare id: the runtime from the CRI's Version
	src := []string{"--cri-socket", c.sock, "--kubelet-log-dir", logs}
	dport := fmt.Sprintf("%d", port)
	named := func(recs []record, state string) bool {
		for _, r := range recs {
			if r.num("dport") == float64(port) && (state == "" || r.str("new_state") == state || r.str("state") == state) && hasIdentity(r, want) {
				return true
			}
		}
		return false
	}

	t.Run("live", func(t *testing.T) {
		p := start(t, append([]string{"-o", "json", "--no-snapshot", "--dport", dport}, src...)...)
		p.waitForIn(t, 15*time.Second, "a connect of the container named by the CRI", func(lines []string) bool {
			return named(parseJSON(t, lines), "syn-sent")
		})
		p.stop(t)
	})
	t.Run("once", func(t *testing.T) {
		var recs []record
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !named(recs, "established"); time.Sleep(100 * time.Millisecond) {
			out, err := exec.Command(socktraceBin(t), append([]string{"--once", "-o", "json", "--dport", dport}, src...)...).Output()
			if err != nil {
				t.Fatalf("socktrace --once: %v", err)
			}
			recs = parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n"))
		}
		if !named(recs, "established") {
			t.Errorf("--once: no established socket of the container with %v in %v", want, recs)
		}
	})
	// A socket that is not there: said once, and the kubelet's logs name
	// the pod instead.
	t.Run("absent socket", func(t *testing.T) {
		absent := filepath.Join(c.dir, "absent.sock")
		fromLogs := map[string]any{"namespace": "from-logs", "pod": "not-this-pod", "container": "not-this-container"}
		var recs []record
		var stderr bytes.Buffer
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			cmd := exec.Command(socktraceBin(t), "--once", "-o", "json", "--dport", dport, "--cri-socket", absent, "--kubelet-log-dir", logs)
			stderr.Reset()
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("socktrace --once --cri-socket %s: %v\n%s", absent, err, stderr.String())
			}
			if recs = parseJSON(t, strings.Split(strings.TrimSpace(string(out)), "\n")); len(recs) > 0 && recs[0]["container_id"] != nil {
				break
			}
		}
		n := 0
		for _, r := range recs {
			if r["container_id"] == nil {
				continue
			}
			n++
			if !hasIdentity(r, fromLogs) {
				t.Errorf("with no CRI socket: %v, want the kubelet logs' %v", r, fromLogs)
			}
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		said := 0
		for _, l := range lines {
			if strings.Contains(l, "CRI socket "+absent) {
				said++
			}
		}
		if n == 0 || said != 1 || !strings.Contains(stderr.String(), "--cri-socket") {
			t.Errorf("%d sockets of the container; stderr says the absent socket %d times, want once with what to do:\n%s", n, said, stderr.String())
		}
	})
	t.Run("agent", func(t *testing.T) {
		_, addr := startAgent(t, append([]string{"--workload-labels"}, src...)...)
		labels := []string{`container="checkout"`, `namespace="shop"`, `pod="checkout-7d9f8b6c5-x2x4z"`, `dport="` + dport + `"`, `outcome="established"`}
		var have []string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			have = have[:0]
			for k, v := range scrape(t, http.DefaultClient, "http://"+addr+"/metrics") {
				if !strings.HasPrefix(k, "socktrace_connect_attempts_total{") || !strings.Contains(k, `dport="`+dport+`"`) {
					continue
				}
				have = append(have, k)
				all := v >= 1
				for _, l := range labels {
					all = all && strings.Contains(k, l)
				}
				if all {
					return
				}
			}
		}
		t.Errorf("no socktrace_connect_attempts_total with %v; have:\n%s", labels, strings.Join(have, "\n"))
	})
}

// containerd is a containerd started by a test.
type containerd struct {
	dir, sock string
	rt        runtimeapi.RuntimeServiceClient
}

// startContainerd starts containerd with a root, state, socket and
// config of the test's own (cgroupfs, the test's image as sandbox_image),
// imports the test's image, and stops it all when the test ends: pods
// removed, containerd and its shims killed, mounts under its directories
// unmounted, cgroups and directories removed.
func startContainerd(t *testing.T, cgroupParent string) *containerd {
	t.Helper()
	dir := t.TempDir()
	c := &containerd{dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	// Cleanups run last first: this one after the pods are removed and
	// containerd has stopped, before t.TempDir's removal.
	shimDir := "/run/containerd/s" // where containerd 1.6's shims put their sockets, whatever its state dir
	madeRun := !exists("/run/containerd")
	t.Cleanup(func() {
		killShims(t, c.sock)
		unmountUnder(t, dir)
		removeCgroups(t, cgroupParent)
		if madeRun {
			os.Remove(shimDir)
			os.Remove("/run/containerd")
		}
	})
	archive := buildImage(t, dir)
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", criImage, filepath.Join(dir, "cni"), filepath.Join(dir, "runc"))
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	cmd := exec.Command("containerd", "--config", cfg, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("containerd's log:\n%s", logBuf.String())
		}
	})
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.rt = runtimeapi.NewRuntimeServiceClient(conn)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("containerd's CRI does not answer at %s: %v\n%s", c.sock, err, logBuf.String())
		}
	}
	if out, err := exec.Command("ctr", "--address", c.sock, "-n", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", archive, err, out)
	}
	return c
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// runPod runs a pod sandbox and removes it when the test ends.
func (c *containerd) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	id := r.GetPodSandboxId()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	})
	return id
}

// runContainer creates and starts a container in the pod sandbox box
// (removed with the sandbox).
func (c *containerd) runContainer(t *testing.T, box string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: box, Config: cfg, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.GetContainerId()}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return r.GetContainerId()
}

// buildImage builds criProg statically and packs it as an OCI image
// archive (one layer: /prog), named criImage; it returns the archive.
func buildImage(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "prog.go")
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(src, []byte(criProg), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", prog, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", src, err, out)
	}
	bin, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "prog", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
	tw.Write(bin)
	tw.Close()

	blobs := map[string][]byte{}
	desc := func(mediaType string, b []byte) map[string]any {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		blobs[d] = b
		return map[string]any{"mediaType": mediaType, "digest": d, "size": len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	layerDesc := desc("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config := desc("application/vnd.oci.image.config.v1+json", mustJSON(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/prog"}, "Cmd": []string{"pause"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc["digest"].(string)}},
	}))
	manifest := desc("application/vnd.oci.image.manifest.v1+json", mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": config, "layers": []any{layerDesc},
	}))
	manifest["platform"] = map[string]any{"architecture": runtime.GOARCH, "os": "linux"}
	manifest["annotations"] = map[string]string{
		"io.containerd.image.name":          criImage,
		"org.opencontainers.image.ref.name": criImage[strings.LastIndexByte(criImage, ':')+1:],
	}
	index := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{manifest}})

	archive := filepath.Join(dir, "image.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	aw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		if err := aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		aw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	var digests []string
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d])
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return archive
}

// killShims kills the containerd-shim-runc-v2 processes of the
// containerd at sock (they outlive it), by their ids.
func killShims(t *testing.T, sock string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") || !containsArg(args, sock) {
			continue
		}
		t.Logf("killing shim %d left by containerd", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func containsArg(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

// unmountUnder unmounts every mount below dir, innermost first.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	}
}

// removeCgroups kills what still runs in cgroup path and below (a
// container left by a failed test) and removes them, then path's empty
// parents, in every cgroup hierarchy (runc makes them in each);
// directories still in use (another test's) stay.
func removeCgroups(t *testing.T, path string) {
	for _, h := range cgroupMounts(t) {
		dir := filepath.Join(h, path)
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // innermost first
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				b, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
				pids := strings.Fields(string(b))
				for _, pid := range pids {
					var n int
					fmt.Sscan(pid, &n)
					syscall.Kill(n, syscall.SIGKILL)
				}
				if err := os.Remove(dirs[i]); err == nil || os.IsNotExist(err) || time.Now().After(deadline) {
					if err != nil && !os.IsNotExist(err) {
						t.Errorf("remove cgroup %s: %v", dirs[i], err)
					}
					break
				}
			}
		}
		for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
			if os.Remove(filepath.Join(h, p)) != nil {
				break
			}
		}
	}
}

// cgroupMounts lists the mount points of cgroup hierarchies, v1 and v2.
func cgroupMounts(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		_, post, ok := strings.Cut(l, " - ")
		f := strings.Fields(l)
		if ok && len(f) > 4 && (strings.HasPrefix(post, "cgroup ") || strings.HasPrefix(post, "cgroup2 ")) {
			out = append(out, f[4])
		}
	}
	return out
}
