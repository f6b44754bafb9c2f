package workload

import (
	"regexp"
	"strings"
	"testing"
)

// samples are real cgroup paths (or, where a comment says so, paths built
// from a runtime's documented naming), each with where it comes from.
var samples = []struct {
	path string
	want Workload
}{
	// --- systemd units ---

	// coroot-node-agent cgroup/fixtures/proc/550/cgroup
	{"/system.slice/ssh.service", Workload{Unit: "ssh.service"}},
	// coroot-node-agent cgroup/fixtures/proc/600/cgroup
	{"/system.slice/springboot.service", Workload{Unit: "springboot.service"}},
	// coroot-node-agent cgroup/fixtures/proc/100/cgroup: dockerd itself is a unit, not a container
	{"/system.slice/docker.service", Workload{Unit: "docker.service"}},
	// coroot-node-agent cgroup/fixtures/proc/1000/cgroup: an instance inside an escaped template slice
	{"/system.slice/system-getty.slice/getty@tty1.service", Workload{Unit: "getty@tty1.service"}},
	// coroot-node-agent cgroup/cgroup_test.go
	{"/system.slice/system-postgresql.slice/postgresql@9.4-main.service", Workload{Unit: "postgresql@9.4-main.service"}},
	// coroot-node-agent cgroup/cgroup_test.go: a slice alone (with a \x2d escape) is not a unit
	{`/system.slice/system-serial\x2dgetty.slice`, Workload{}},
	// coroot-node-agent cgroup/cgroup_test.go: kubelet run as a unit in a custom slice
	{"/runtime.slice/kubelet.service", Workload{Unit: "kubelet.service"}},
	// coroot-node-agent cgroup/cgroup_test.go
	{"/azure.slice/walinuxagent.service", Workload{Unit: "walinuxagent.service"}},
	// coroot-node-agent cgroup/cgroup_test.go: a systemd-run scope with a hex-looking name is still a unit
	{"/system.slice/run-ra2ddf9594bbf4a1986439b594f89eb0f.scope", Workload{Unit: "run-ra2ddf9594bbf4a1986439b594f89eb0f.scope"}},
	// systemd user@.service(5), EXAMPLES (systemd-cgls): an ssh login session
	{"/user.slice/user-1000.slice/session-19.scope", Workload{Unit: "session-19.scope"}},
	// systemd user@.service(5), EXAMPLES: a user service inside the user manager
	{"/user.slice/user-1000.slice/user@1000.service/gnome-terminal-server.service", Workload{Unit: "gnome-terminal-server.service"}},
	// systemd user@.service(5), EXAMPLES; falcosecurity/plugins plugins/container/test/matchers.cpp (non_container_cgroup)
	{"/user.slice/user-1000.slice/user@1000.service/init.scope", Workload{Unit: "init.scope"}},
	// systemd user@.service(5): the user manager's own unit, with nothing inside it
	{"/user.slice/user-1000.slice/user@1000.service", Workload{Unit: "user@1000.service"}},
	// k3s pkg/cgroups/cgroups_linux.go (PID 1 "lives at / or /init.scope", per systemd.special(7))
	{"/init.scope", Workload{Unit: "init.scope"}},
	// the brief's own counter-example (no public sample found): a scope named like a runtime prefix is a unit, not a container
	{"/system.slice/docker-compose.scope", Workload{Unit: "docker-compose.scope"}},

	// --- docker ---

	// coroot-node-agent cgroup/fixtures/proc/800/cgroup: systemd driver
	{"/system.slice/docker-cf87ba651579c9231db817909e7865e5747bd7abcac0c57ce23cf4abbaee046b.scope",
		Workload{ContainerID: "cf87ba651579c9231db817909e7865e5747bd7abcac0c57ce23cf4abbaee046b", Runtime: "docker"}},
	// coroot-node-agent cgroup/fixtures/proc/200/cgroup: cgroupfs driver
	{"/docker/b43d92bf1e5c6f78bb9b7bc6f40721280299855ba692092716e3a1b6c0b86f3f",
		Workload{ContainerID: "b43d92bf1e5c6f78bb9b7bc6f40721280299855ba692092716e3a1b6c0b86f3f", Runtime: "docker"}},
	// coroot-node-agent cgroup/fixtures/proc/500/cgroup: read from inside another cgroup namespace
	{"/../../../../system.slice/docker-ba7b10d15d16e10e3de7a2dcd408a3d971169ae303f46cfad4c5453c6326fee2.scope",
		Workload{ContainerID: "ba7b10d15d16e10e3de7a2dcd408a3d971169ae303f46cfad4c5453c6326fee2", Runtime: "docker"}},
	// rancher/os issue #2398 (kubelet log): docker in docker, the inner one wins
	{"/docker/7fe4e42aee56f227ae165205dd1409936000f6cf06c3e79af13b41f5aed2244b/docker/b04074c807422b5f8efc050b0cba975f20cdacb39a1e28197cfb4e1465190759",
		Workload{ContainerID: "b04074c807422b5f8efc050b0cba975f20cdacb39a1e28197cfb4e1465190759", Runtime: "docker"}},
	// containers/crun issue #703 (/proc/self/cgroup): docker inside a podman container
	{"/machine.slice/libpod-4a8dd27841a96004bc286d609621c4deee11577073d999eaf81a8fc9e513a314.scope/docker/eefb2b2ee52bc02fd916e11c0d723a7b0a5af8fc05940091c91960523aaf0bad",
		Workload{ContainerID: "eefb2b2ee52bc02fd916e11c0d723a7b0a5af8fc05940091c91960523aaf0bad", Runtime: "docker"}},

	// --- Kubernetes, systemd driver ---

	// coroot-node-agent cgroup/fixtures/proc/400/cgroup: besteffort pod, dockershim/cri-dockerd
	{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/docker-73051af271105c07e1f493b34856a77e665e3b0b4fc72f76c807dfbffeb881bd.scope",
		Workload{ContainerID: "73051af271105c07e1f493b34856a77e665e3b0b4fc72f76c807dfbffeb881bd", Runtime: "docker", PodUID: "8712f785-1a3e-41ec-a00b-e2dcc77431cb", QoS: "besteffort"}},
	// coroot-node-agent cgroup/cgroup_test.go: cri-o, burstable
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59.scope",
		Workload{ContainerID: "49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59", Runtime: "cri-o", PodUID: "2942c55e-c9cb-428a-93f4-eaf89c1f3ce0", QoS: "burstable"}},
	// coroot-node-agent cgroup/cgroup_test.go: crun's "container" sub-cgroup below cri-o's scope
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podea19ff5d_943a_4466_a07e_a71e9e50cc62.slice/crio-21572039dd8398ff8272b031fa5422a40165145ab37f2f8794e1e7f844fe8118.scope/container",
		Workload{ContainerID: "21572039dd8398ff8272b031fa5422a40165145ab37f2f8794e1e7f844fe8118", Runtime: "cri-o", PodUID: "ea19ff5d-943a-4466-a07e-a71e9e50cc62", QoS: "burstable"}},
	// built from cri-o internal/config/cgmgr/systemd_linux.go (MoveConmonToCgroup: "crio-conmon-%s.scope" in the pod slice) on the pod above
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-conmon-49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59.scope",
		Workload{ContainerID: "49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59", Runtime: "cri-o", Conmon: true, PodUID: "2942c55e-c9cb-428a-93f4-eaf89c1f3ce0", QoS: "burstable"}},
	// coroot-node-agent containers/registry.go (calcId skips "/system.slice/crio-conmon-": cri-o's conmon_cgroup = "system.slice"); id from the sample above
	{"/system.slice/crio-conmon-49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59.scope",
		Workload{ContainerID: "49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59", Runtime: "cri-o", Conmon: true}},
	// k3k pull request #792 (rancher/k3k): the k3s server moved into its own pod's cgroup: a pod with no container segment
	{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod33baea74_f206_4f95_9893_c56282acda4e.slice",
		Workload{PodUID: "33baea74-f206-4f95-9893-c56282acda4e", QoS: "burstable"}},
	// kubelet pkg/kubelet/cm/qos_container_manager_linux.go: a QoS slice alone names no pod
	{"/kubepods.slice/kubepods-burstable.slice", Workload{}},
	// kepler pkg/kubelet/pod_lister_test.go (ubuntuContainerd): kind node, kubelet --cgroup-root=/kubelet
	{"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod36f20d9d_cbc1_4ebd_b111_536eaa6a332e.slice/cri-containerd-db90aabe3ba00bab92a9bd3f0b4a9face4601651c91d28c02a953a8c81ce2cc4.scope",
		Workload{ContainerID: "db90aabe3ba00bab92a9bd3f0b4a9face4601651c91d28c02a953a8c81ce2cc4", Runtime: "containerd", PodUID: "36f20d9d-cbc1-4ebd-b111-536eaa6a332e", QoS: "besteffort"}},
	// containerd/nri pull request #227 (kind node, log of a pod sandbox's absolutePath)
	{"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d.scope",
		Workload{ContainerID: "d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d", Runtime: "containerd", PodUID: "1e597579-417e-482f-bf65-5fe170c3aebd", QoS: "besteffort"}},
	// `systemctl status` inside a kind node (kindnetd), public notes; guaranteed pods have no QoS component
	{"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod25481da8_5ec3_4008_9d54_a47f9a615e58.slice/cri-containerd-82c05f0822fece7008091b6aa5f716e6636b2160e54760ff93799a678a7a55bc.scope",
		Workload{ContainerID: "82c05f0822fece7008091b6aa5f716e6636b2160e54760ff93799a678a7a55bc", Runtime: "containerd", PodUID: "25481da8-5ec3-4008-9d54-a47f9a615e58", QoS: "guaranteed"}},
	// kepler pkg/kubelet/pod_lister_test.go (rhelDocker): a kind node seen from the host; static pod (config-hash UID, so no PodUID)
	{"/system.slice/docker-c27755f0fa91e81ababc85ef05cb227227a4228da2e5cb2f4999299c89d4ac69.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-podd8992f589d8dd12c4342376ccb459375.slice/cri-containerd-ecbcea5cd29afb25ba519715e827cda9e66cd0a914207f49ce0a292a6aa84d66.scope",
		Workload{ContainerID: "ecbcea5cd29afb25ba519715e827cda9e66cd0a914207f49ce0a292a6aa84d66", Runtime: "containerd", QoS: "burstable"}},
	// kepler pkg/kubelet/pod_lister_test.go (rhelContainerd): containerd without SystemdCgroup=true takes "slice:prefix:id" literally
	{"/system.slice/containerd.service/kubepods-besteffort-pod0043435f_1854_4327_b76b_730f681a781d.slice:cri-containerd:01fd96f7ad292b02a8317cde4ecb8c7ef3cc06ffdd113f13410e0837eb2b2a20",
		Workload{ContainerID: "01fd96f7ad292b02a8317cde4ecb8c7ef3cc06ffdd113f13410e0837eb2b2a20", Runtime: "containerd", PodUID: "0043435f-1854-4327-b76b-730f681a781d", QoS: "besteffort"}},
	// falcosecurity/plugins plugins/container/test/matchers.cpp (containerd_unknown); src/matchers/cri.cpp ":cri-containerd:"
	{"/kubepods-burstable-podbd12dd3393227d950605a2444b13c27a.slice:cri-containerd:d52db56a9c80d536a91354c0951c061187ca46249e64865a12703003d8f42366",
		Workload{ContainerID: "d52db56a9c80d536a91354c0951c061187ca46249e64865a12703003d8f42366", Runtime: "containerd", QoS: "burstable"}},
	// built from cri-o internal/config/cgmgr/systemd_linux.go (CreateSandboxCgroup: a cgroupfs "crio-<sandbox id>" below the pod slice)
	{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod63b3ebfc_2890_11e9_8154_16bf8ef8d9dc.slice/crio-17d8c9eacc629f9945f304d89e9708c0c619649a484a215b240628319548a09f",
		Workload{ContainerID: "17d8c9eacc629f9945f304d89e9708c0c619649a484a215b240628319548a09f", Runtime: "cri-o", PodUID: "63b3ebfc-2890-11e9-8154-16bf8ef8d9dc", QoS: "besteffort"}},

	// --- Kubernetes, cgroupfs driver ---

	// coroot-node-agent cgroup/fixtures/proc/300/cgroup: a bare id below the pod does not name its runtime
	{"/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/17db96a24ae1e9dd57143e62b1cb0d2d35e693c65c774c7470e87b0572e07c1a",
		Workload{ContainerID: "17db96a24ae1e9dd57143e62b1cb0d2d35e693c65c774c7470e87b0572e07c1a", PodUID: "6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", QoS: "burstable"}},
	// coroot-node-agent cgroup/cgroup_test.go: a sub-cgroup inside the container
	{"/kubepods/besteffort/pod0d08203e-255a-11e9-8cd9-0007cb0b2cc8/671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55/kube-proxy",
		Workload{ContainerID: "671a50f5d60566556912f61511d0ec9e4d5c78d53fbc4676727180438bbbbc55", PodUID: "0d08203e-255a-11e9-8cd9-0007cb0b2cc8", QoS: "besteffort"}},
	// rancher/os issue #3024 (runc error): guaranteed
	{"/kubepods/podc21cfb9a-54f2-4a79-b7fa-3c679dec4209/578d8abcf822a73ecc3d40c91885ca6c1a1f887fb6619209dbccd21adcc62280",
		Workload{ContainerID: "578d8abcf822a73ecc3d40c91885ca6c1a1f887fb6619209dbccd21adcc62280", PodUID: "c21cfb9a-54f2-4a79-b7fa-3c679dec4209", QoS: "guaranteed"}},
	// coroot-node-agent cgroup/cgroup_test.go: static pod, its "UID" a config hash
	{"/kubepods/burstable/pod9729a196c4723b60ab401eaff722982d/d166c6190614efc91956b78e96d74c3fbc96ca8e91948c36de3bc5b0e7b27d48",
		Workload{ContainerID: "d166c6190614efc91956b78e96d74c3fbc96ca8e91948c36de3bc5b0e7b27d48", QoS: "burstable"}},
	// coroot-node-agent cgroup/cgroup_test.go: cri-o under the cgroupfs driver
	{"/kubepods/poda48c12e8-255a-11e9-8cd9-0007cb0b2cc8/crio-63425c4a8b4291744a79dd9011fddc7a1f8ffda61f65d72196aa01d00cae2e2e",
		Workload{ContainerID: "63425c4a8b4291744a79dd9011fddc7a1f8ffda61f65d72196aa01d00cae2e2e", Runtime: "cri-o", PodUID: "a48c12e8-255a-11e9-8cd9-0007cb0b2cc8", QoS: "guaranteed"}},
	// rancher/k3k pull request #792 (/proc/PID/cgroup of metrics-server in k3s)
	{"/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
		Workload{ContainerID: "3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b", PodUID: "404bd273-57bc-4508-a386-e2b76d3c9cfe", QoS: "burstable"}},
	// rancher/k3k pull request #792: the k3s server's own cgroup (k3s pkg/cgroups/cgroups_linux.go names it "/"+version.Program)
	{"/k3s", Workload{}},
	// kind images/base/files/usr/local/bin/entrypoint, fix_cgroup's example inputs ("Cloud Shell"): a static pod under the cgroupfs driver
	{"/kubepods/besteffort/pod3d6beaa3004913efb68ce073d73494b0/accdf94879f0a494f317e9a0517f23cdd18b35ff9439efd0175f17bbc56877c4",
		Workload{ContainerID: "accdf94879f0a494f317e9a0517f23cdd18b35ff9439efd0175f17bbc56877c4", QoS: "besteffort"}},
	// built from kind images/base/files/usr/local/bin/entrypoint (kubelet cgroup root "/kubelet" under the cgroupfs driver) and the k3k sample above
	{"/kubelet/kubepods/burstable/pod404bd273-57bc-4508-a386-e2b76d3c9cfe/3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b",
		Workload{ContainerID: "3aaaa76f09e1de6bb75e84f9c15b737a2d590f69757953e3ec262bd5861dc15b", PodUID: "404bd273-57bc-4508-a386-e2b76d3c9cfe", QoS: "burstable"}},
	// rancher/os issue #2967, cpuset line (prefix) with the name=systemd line's tail: Kubernetes nested in a docker container
	{"/docker/8ec3e6062e1825067fddaa64bfb839cb47579b4bfe49c4dd9d486ff81c35a479/kubepods/besteffort/pod7e241a28-b013-481e-9e00-cbe6f00b5eaf/6b5583d73d20fa6da209e4d628a0c27395815f6613cb0a2c7e0e5b64507b210c",
		Workload{ContainerID: "6b5583d73d20fa6da209e4d628a0c27395815f6613cb0a2c7e0e5b64507b210c", PodUID: "7e241a28-b013-481e-9e00-cbe6f00b5eaf", QoS: "besteffort"}},

	// --- podman ---

	// containers/podman libpod/oci_conmon_linux.go + a public debug log ("Running conmon under slice machine.slice and unitName libpod-conmon-6dd05e91….scope")
	{"/machine.slice/libpod-conmon-6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394.scope",
		Workload{ContainerID: "6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394", Runtime: "podman", Conmon: true}},
	// the same container (podman libpod/container_internal_linux.go: "%s:libpod:%s" under machine.slice)
	{"/machine.slice/libpod-6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394.scope",
		Workload{ContainerID: "6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394", Runtime: "podman"}},
	// rootless: podman libpod/util_linux.go (user.slice/user-$UID.slice/user@$UID.service/user.slice/…), falcosecurity/plugins src/matchers/podman.cpp (".scope/container"); id from a public test "observed with podman on Gentoo, openSUSE"
	{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-3f084b4c7b789c1a0f174da3fcd339e31125d3096b3ff46a0bef4fad71d09362.scope/container",
		Workload{ContainerID: "3f084b4c7b789c1a0f174da3fcd339e31125d3096b3ff46a0bef4fad71d09362", Runtime: "podman"}},
	// kind images/base/files/usr/local/bin/entrypoint (fix_cgroup's example inputs, xref kubernetes/minikube#9508); podman libpod/container.go CgroupfsDefaultCgroupParent
	{"/libpod_parent/libpod-73a4fb9769188ae5dc51cb7e24b9f2752a4af7b802a8949f06a7b2f2363ab0e9",
		Workload{ContainerID: "73a4fb9769188ae5dc51cb7e24b9f2752a4af7b802a8949f06a7b2f2363ab0e9", Runtime: "podman"}},
	// podman libpod/oci_conmon_linux.go: under cgroupfs every conmon goes to <parent>/conmon, with no id
	{"/libpod_parent/conmon", Workload{Runtime: "podman", Conmon: true}},
	// falcosecurity/plugins plugins/container/test/matchers.cpp (root_libpod_cgroup_mode_split_no_scope): --cgroups=split inside a unit
	{"/system.slice/system-ceph-f952f5be-565c-11f0-ab72-0affea283157.slice/ceph-f952f5be-565c-11f0-ab72-0affea283157@mon.ip-10-0-25-96.service/libpod-payload-9cc35a907a1e4e7ac8c021758b2bb28db60b3a787115f9114a641bf44f8ba99b",
		Workload{ContainerID: "9cc35a907a1e4e7ac8c021758b2bb28db60b3a787115f9114a641bf44f8ba99b", Runtime: "podman"}},
	// built from podman libpod/pod_internal_linux.go ("libpod_pod_%s" slice under machine.slice): a podman pod is not a Kubernetes pod
	{"/machine.slice/machine-libpod_pod_0a8a8ed43f5ba5f4d7a0dfa4b0fbc2d0fdfc8d25cd50b5478b6f1cd5a1b7e1a4.slice/libpod-6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394.scope",
		Workload{ContainerID: "6dd05e91f00f99281f70b1fd90a29e5cc30b0dab243cb7cfb6153d8017872394", Runtime: "podman"}},

	// --- containerd outside Kubernetes ---

	// built from nerdctl pkg/cmd/container/run_cgroup_linux.go ("system.slice:nerdctl:<id>") and runc's systemd getUnitName (prefix-name.scope)
	{"/system.slice/nerdctl-d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d.scope",
		Workload{ContainerID: "d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d", Runtime: "containerd"}},
	// built from nerdctl pkg/cmd/container/run_cgroup_linux.go ("containerd already sets a default cgroup path as /<namespace>/<containerID>") and containerd pull request #1617
	{"/default/d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d",
		Workload{ContainerID: "d7dfb4a21fe1703a8537e60d5af248af729315d187b24a538102d14874c8117d", Runtime: "containerd"}},
	// falcosecurity/plugins plugins/container/test/matchers.cpp (containerd_default): a `ctr run` name is not a hex id: not recognised
	{"/default/test_container", Workload{}},
	// coroot-node-agent cgroup/cgroup_test.go: containerd's CRI plugin with the systemd driver, no pod
	{"/system.slice/cri-containerd-69e8ded3c33c9d5e2b93acd74787b17a8629f74d6707bc5bb9b2e095337d0263.scope",
		Workload{ContainerID: "69e8ded3c33c9d5e2b93acd74787b17a8629f74d6707bc5bb9b2e095337d0263", Runtime: "containerd"}},

	// --- LXC ---

	// coroot-node-agent cgroup/cgroup_test.go: LXC before 3.1
	{"/lxc/mysql-primary-db", Workload{ContainerID: "mysql-primary-db", Runtime: "lxc"}},
	// coroot-node-agent cgroup/cgroup_test.go: LXC 4.0+
	{"/lxc.payload.first", Workload{ContainerID: "first", Runtime: "lxc"}},
	// coroot-node-agent cgroup/fixtures/proc/3000/cgroup: systemd inside the container; the container wins
	{"/lxc.payload.first/system.slice/systemd-logind.service", Workload{ContainerID: "first", Runtime: "lxc"}},
	// coroot-node-agent cgroup/cgroup_test.go: the monitor
	{"/lxc.monitor.first", Workload{ContainerID: "first", Runtime: "lxc", Conmon: true}},
	// procps-ng library/readproc.c ("lxc.payload/" thru lxc-3.2.1); falcosecurity/plugins src/matchers/lxc.cpp
	{"/lxc.payload/first", Workload{ContainerID: "first", Runtime: "lxc"}},

	// --- not recognised ---

	// kind images/base/files/usr/local/bin/entrypoint, fix_cgroup's example inputs ("GitHub actions #9304"): a bare id under an unknown parent
	{"/actions_job/0924fbbcf7b18d2a00c171482b4600747afc367a9dfbeac9d6b14b35cda80399", Workload{}},
	// coroot-node-agent cgroup/cgroup_test.go: a Talos system service
	{"/podruntime/kubelet", Workload{}},
	// Datadog dd-trace-ot ContainerInfoTest.groovy, ECS examples (copy in open-telemetry/opentelemetry-java-instrumentation): unsupported, the path does not say the runtime
	{"/ecs/haissam-ecs-classic/5a0d5ceddf6c44c1928d367a815d890f/38fac3e99302b3622be089dd41e7ccf38aff368a86cc339972075136ee2710ce", Workload{}},
}

func TestParse(t *testing.T) {
	if len(samples) < 30 {
		t.Fatalf("only %d samples", len(samples))
	}
	for _, s := range samples {
		if got := Parse(s.path); got != s.want {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", s.path, got, s.want)
		}
	}
}

func TestParseOddInput(t *testing.T) {
	id := "cf87ba651579c9231db817909e7865e5747bd7abcac0c57ce23cf4abbaee046b"
	docker := Workload{ContainerID: id, Runtime: "docker"}
	long := strings.Repeat("/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", 20000) + "/docker/" + id
	for _, tc := range []struct {
		path string
		want Workload
	}{
		{"", Workload{}},
		{"/", Workload{}},
		{"//", Workload{}},
		{"..", Workload{}},
		{"/../..", Workload{}},
		{"/./.", Workload{}},
		{"system.slice/nginx.service", Workload{Unit: "nginx.service"}}, // no leading slash
		{"/system.slice/nginx.service/", Workload{Unit: "nginx.service"}},
		{"/system.slice//docker-" + id + ".scope//", docker},
		{"/docker/" + id + "/", docker},
		{"/system.slice/docker-" + id + ".scope/init.scope", docker}, // systemd inside the container: still the container
		{"/kubepods/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/foo.scope", Workload{PodUID: "6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", QoS: "guaranteed"}},
		{"/system.slice/\xff\xfe.service", Workload{}},                                                   // not UTF-8: not a unit name
		{"/docker/" + id[:63] + "\xff", Workload{}},                                                      // not hex
		{"/docker/" + strings.ToUpper(id), Workload{}},                                                   // ids are lower-case
		{"/docker/" + id[:12], Workload{}},                                                               // a bare id must be whole
		{"/system.slice/docker-" + id[:11] + ".scope", Workload{Unit: "docker-" + id[:11] + ".scope"}},   // too short for an id
		{"/system.slice/docker-" + id + id + ".scope", Workload{Unit: "docker-" + id + id + ".scope"}},   // too long
		{"/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979", Workload{}},                       // UID one short
		{"/kubepods/burstable/pod6a4ce4a0_ba47_11ea_b2a7_0cc47ac5979e", Workload{}},                      // wrong separator for cgroupfs
		{"/kubepods.slice/kubepods-burstable-pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e.slice", Workload{}}, // wrong separator for systemd
		{"/kubepods-pod.slice", Workload{}},
		{"/x:y:z", Workload{}},
		{"0::/system.slice/nginx.service", Workload{Unit: "nginx.service"}},
		{"/lxc.payload.", Workload{}},
		{strings.Repeat("/a", 1<<20), Workload{}},
		{strings.Repeat("/", 1<<20), Workload{}},
		{long, Workload{ContainerID: id, Runtime: "docker", PodUID: "6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e", QoS: "burstable"}},
	} {
		got := Parse(tc.path)
		if got != tc.want {
			name := tc.path
			if len(name) > 100 {
				name = name[:100] + "…"
			}
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", name, got, tc.want)
		}
		if got.IsZero() != (tc.want == Workload{}) {
			t.Errorf("Parse(%q).IsZero() = %v", tc.path, got.IsZero())
		}
	}
}

func TestParseAllocs(t *testing.T) {
	for path, max := range map[string]float64{
		"/system.slice/docker-cf87ba651579c9231db817909e7865e5747bd7abcac0c57ce23cf4abbaee046b.scope": 0,
		// a systemd-driver pod UID is rewritten with dashes: the only allocation
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2942c55e_c9cb_428a_93f4_eaf89c1f3ce0.slice/crio-49f9e8e5395d57c1083996c09e2e6f042d5fe1ec0310facab32f94912b35ce59.scope": 1,
		"/kubepods/burstable/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/17db96a24ae1e9dd57143e62b1cb0d2d35e693c65c774c7470e87b0572e07c1a":                                                          0,
	} {
		if n := testing.AllocsPerRun(100, func() { Parse(path) }); n > max {
			t.Errorf("Parse(%q): %v allocations, want at most %v", path, n, max)
		}
	}
}

var uidForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func FuzzParse(f *testing.F) {
	for _, s := range samples {
		f.Add(s.path)
	}
	f.Add("/kubepods/pod6a4ce4a0-ba47-11ea-b2a7-0cc47ac5979e/x:crio:" + strings.Repeat("a", 64))
	f.Fuzz(func(t *testing.T, path string) {
		w := Parse(path)
		if !strings.Contains(path, w.ContainerID) || !strings.Contains(path, w.Unit) {
			t.Errorf("Parse(%q) = %+v: ContainerID or Unit not from the path", path, w)
		}
		if w.PodUID != "" && !uidForm.MatchString(w.PodUID) {
			t.Errorf("Parse(%q): PodUID %q is not a dashed UUID", path, w.PodUID)
		}
		switch w.Runtime {
		case "", "docker", "containerd", "cri-o", "podman", "lxc":
		default:
			t.Errorf("Parse(%q): Runtime %q", path, w.Runtime)
		}
		switch w.QoS {
		case "", "guaranteed", "burstable", "besteffort":
		default:
			t.Errorf("Parse(%q): QoS %q", path, w.QoS)
		}
		if w.Unit != "" && (w.ContainerID != "" || w.Runtime != "" || w.QoS != "") {
			t.Errorf("Parse(%q) = %+v: a unit inside a container or pod", path, w)
		}
		if w.IsZero() != (w == Workload{}) {
			t.Errorf("IsZero")
		}
	})
}
