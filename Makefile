# socktrace: everything is driven from here; see README.md.
#   make run ARGS='--state syn-sent --dport 9092'   install what is missing, build, run
#   make test                                       install what is missing, check, run all tests (as root)
#   make image                                      build the DaemonSet's image socktrace:latest with podman
#   make vmtest [KERNELS=6.1]                       run the privileged tests in qemu VMs on Debian's 5.10, 6.1, 6.12 kernels

SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/socktrace
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Debian packages: the BPF toolchain (only to regenerate the object), the
# network tools the tests and users rely on (conntrack to check NAT
# backends), and the container runtimes the tests run the DaemonSet's
# image and real containers under (podman with runc: crun refuses this
# kind of hybrid-cgroup host; containerd for its CRI).
APT_PACKAGES := clang-14 llvm-14 libbpf-dev linux-libc-dev iproute2 nftables prometheus dnsmasq-base conntrack podman runc containerd chromium strace

# What make vmtest needs besides the above: qemu, and xz for compressed
# kernel modules (apt-get and dpkg-deb come with Debian).
VMTEST_PACKAGES := qemu-system-x86 xz-utils
# Kernel series for make vmtest: all (5.10 6.1 6.12) unless given.
KERNELS ?=

GENERATED := internal/events/socktrace_bpfel.go internal/events/socktrace_bpfel.o internal/owner/owners/owners_bpfel.go internal/owner/owners/owners_bpfel.o internal/dns/dnswatch/dns_bpfel.go internal/dns/dnswatch/dns_bpfel.o internal/witness/witness_bpfel.go internal/witness/witness_bpfel.o
BPF_SOURCES := gen.go $(wildcard bpf/*.c bpf/*.h)

.PHONY: all deps vmtest-deps build image run generate check-generated lint test fuzz vmtest clean

all: build

# $(call apt-install,PACKAGES): install those of the Debian packages that are missing.
define apt-install
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "make $@: run as root (sudo) to install:" $$missing >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt-install,$(APT_PACKAGES))
	@command -v $(GO) >/dev/null || { echo "make: Go is not installed (want Go 1.24+ on PATH or in /usr/local/go)" >&2; exit 1; }
	$(GO) mod download

build: deps
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/socktrace

# The DaemonSet's image, socktrace:latest, from the static binary (see
# deploy/kubernetes/Dockerfile); IMAGE_BUILDER=docker works too.
IMAGE_BUILDER ?= podman
image: build
	$(IMAGE_BUILDER) build -f deploy/kubernetes/Dockerfile -t socktrace:latest .

run: build
	./$(BIN) $(ARGS)

generate: deps
	$(GO) generate ./...

# The committed BPF object and Go bindings must be what the sources make.
check-generated: generate
	@if ! git diff --quiet -- $(GENERATED); then \
		echo "generated BPF files are stale: run 'make generate' and commit them" >&2; \
		git diff --stat -- $(GENERATED) >&2; exit 1; \
	fi
	@echo "generated BPF files are fresh"

# Imports go in three groups: the standard library, other modules, then
# socktrace's own. goimports (pinned, fetched by go run) orders each block;
# tools/importgroups checks the blocks' order, which goimports leaves be.
GOIMPORTS := $(GO) run golang.org/x/tools/cmd/goimports@v0.52.0 -local github.com/socktrace/socktrace

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:" $$out >&2; exit 1; fi
	@out=$$($(GOIMPORTS) -l $$(git ls-files '*.go')) || exit 1; if [ -n "$$out" ]; then echo "imports out of order (fix with $(GOIMPORTS) -w FILE):" $$out >&2; exit 1; fi
	@$(GO) run ./tools/importgroups $$(git ls-files '*.go')
	$(GO) vet ./...

# The OpenTelemetry Collector the OTLP tests and the soak's --otlp run
# send to: the OTLP receiver and the file exporter, built from the
# collector's own modules in a module of its own (tools/otelcol-test), so
# socktrace's binary does not carry them. Rebuilt only when its sources
# change.
OTELCOL := bin/otelcol-test
$(OTELCOL): tools/otelcol-test/main.go tools/otelcol-test/go.mod tools/otelcol-test/go.sum
	cd tools/otelcol-test && CGO_ENABLED=0 $(GO) build -trimpath -o ../../$(OTELCOL) .
.PHONY: otelcol-test
otelcol-test: $(OTELCOL)

# Privileged tests fail rather than skip here: they are the point.
# One package at a time (-p 1): the packages' tests share one kernel, its
# tracepoints and CPUs; side by side, one package's BPF programs and load
# lengthened another's nested runs (the backup race of bpf/backup.h).
test: check-generated lint $(OTELCOL)
	SOCKTRACE_OTELCOL=$(CURDIR)/$(OTELCOL) SOCKTRACE_REQUIRE_ROOT=1 $(GO) test -p 1 -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz

# Short fuzz runs of the parsers that take outside input.
# A count, not a duration: a -fuzztime duration can end a run with a
# spurious "context deadline exceeded" (golang/go#75804, in Go 1.26).
FUZZTIME ?= 50000x
FUZZTIME_REPLAY ?= 10000x # a whole replay a run: slower
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/capture/
	$(GO) test -run '^$$' -fuzz '^FuzzParseExpr$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/filter/
	$(GO) test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/output/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/owner/workload/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/dns/dnscache/
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/safetext/
	$(GO) test -run '^$$' -fuzz '^FuzzTableLines$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 100x ./internal/output/
	$(GO) test -run '^$$' -fuzz '^FuzzReplay$$' -fuzztime $(FUZZTIME_REPLAY) -fuzzminimizetime 100x ./internal/pipeline/

# socktrace ss against ss on many random filter expressions from a random
# seed (make test runs 300 from a fixed one). SS_EXPRS sets how many.
SS_EXPRS ?= 3000
.PHONY: ss-differential
ss-differential: deps
	SOCKTRACE_SS_EXPRS=$(SS_EXPRS) SOCKTRACE_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 30m -run '^TestSSDifferential$$' -v ./cmd/socktrace/ | grep -v '^=== RUN'

vmtest-deps:
	$(call apt-install,$(VMTEST_PACKAGES))

# The privileged tests of internal/... and a smoke test of the binary, in
# qemu VMs booting Debian's own kernels (see vmtest/main.go). Kernels are
# downloaded once into ~/.cache/socktrace-vmtest (VMTEST_CACHE); console
# logs go to bin/vmtest. Not part of make test.
vmtest: deps vmtest-deps
	$(GO) build -o bin/vmtest/vmtest ./vmtest
	KERNELS='$(KERNELS)' ./bin/vmtest/vmtest

clean:
	rm -rf bin

# Benchmark (as root, about 12 minutes): socktrace side by side with
# tcpstates (libbpf-tools), bpftrace and ss, in one run; medians and ratios
# on stdout and in bench/RESULTS.md. See bench/README.md. Flags for the
# runner go in BENCH_ARGS, e.g. BENCH_ARGS='-rounds 5 -wait-load 1'.
BENCH_PACKAGES := libbpf-tools bpftrace iproute2 linux-perf time
.PHONY: bench
bench: build $(OTELCOL)
	$(call apt-install,$(BENCH_PACKAGES))
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
	$(GO) build -o bin/bench-loadgen ./bench/loadgen
	$(GO) build -o bin/bench-runner ./bench/runner
	./bin/bench-runner -socktrace $(BIN) -loadgen bin/bench-loadgen -go $(GO) -soak-otlp $(OTELCOL) -out bench/RESULTS.md $(BENCH_ARGS)
