# Bolt: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(CURDIR)
VENV      := $(ROOT)/.venv
PY        := $(VENV)/bin/python
TOOLS     := $(ROOT)/.tools/bin
GRPCURL   := $(TOOLS)/grpcurl
GRPCURL_VERSION := v1.9.4
# buf (the proto breaking-change check) from npm, which ships its prebuilt binary.
BUF_VERSION := 1.75.0
BUF       := $(ROOT)/.tools/npm/node_modules/.bin/buf
AGENT     := $(ROOT)/target/debug/bolt-agent
AGENT_RELEASE := $(ROOT)/target/release/bolt-agent
DEV       := $(ROOT)/.dev
CARGO     ?= cargo
# Tools built from source once per machine (cargo-deb, cargo-fuzz), kept out
# of the clone so that a fresh clone does not build them again.
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/bolt-tools
export BOLT_AGENT_BIN ?= $(AGENT)

.PHONY: help build release run test test-rust test-integration test-python test-java test-cgroup2 vm bench bench-cgroup2 venv tools proto-check clean fuzz test-fuzz

help:
	@echo "make run    build and start an agent on 127.0.0.1:7443 (dev certificates, example packs)"
	@echo "make test   install what the tests need and run every test"
	@echo "make bench  print the benchmark table (release build)"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked -p bolt-agent

# --- the main job -----------------------------------------------------------

# The command line is in scripts/run-dev.sh (.dev/ and examples/packs, relative
# to the repository root), which integration/tests/test_readme.py runs too.
run: build tools
	@BOLT_AGENT_BIN=$(AGENT) GRPCURL=$(GRPCURL) exec bash scripts/run-dev.sh

# --- tools the tests need ---------------------------------------------------

venv: $(VENV)/.stamp

$(VENV)/.stamp: integration/requirements.txt $(wildcard clients/python/pyproject.toml)
	python3 -m venv $(VENV)
	@# uv (from PyPI) resolves and installs in seconds what pip takes a minute and a half for.
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r integration/requirements.txt \
	    $(if $(wildcard clients/python/pyproject.toml),-e 'clients/python[test]')
	touch $@

# Debian's prometheus, for the test that scrapes an agent with a real server.
# Its service is not started (policy-rc.d): the test runs its own instance.
PROMETHEUS := /usr/bin/prometheus
prometheus: $(PROMETHEUS)
$(PROMETHEUS):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    made=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; rc=$$?; \
	    [ -n "$$made" ] && rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	else echo "NOTICE: cannot install Debian's prometheus (needs root and apt-get): the Prometheus test will be skipped"; fi

# The cgroup v2 suite's VM (scripts/cgroup2-vm.sh): Debian's qemu and kernel,
# and virtiofsd (crates.io; Debian 12 has only qemu's old C one, which
# virtme-ng refuses), with which the guest reads this machine's files many
# times faster than over 9p. virtme-ng itself comes with the venv.
VIRTIOFSD_VERSION := 1.14.0
VIRTIOFSD := $(TOOLS_CACHE)/bin/virtiofsd
vm: /usr/bin/qemu-system-x86_64 $(VIRTIOFSD)
/usr/bin/qemu-system-x86_64:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        qemu-system-x86 linux-image-amd64 busybox-static >/dev/null; \
	else echo "NOTICE: cannot install Debian's qemu and kernel (needs root and apt-get): the cgroup v2 suite will fail"; fi
$(VIRTIOFSD):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev libcap-ng-dev >/dev/null && \
	    echo "installing virtiofsd $(VIRTIOFSD_VERSION) with cargo install" && \
	    $(CARGO) install --quiet --locked --root $(TOOLS_CACHE) virtiofsd@$(VIRTIOFSD_VERSION); \
	else echo "NOTICE: cannot install virtiofsd: the VM reads files over 9p (slower)"; fi

# grpcurl from its Go module, buf from npm; without Go or npm the tests that
# need them are skipped with a notice.
tools: $(GRPCURL) $(BUF)

$(BUF):
	@if command -v npm >/dev/null; then \
	    echo "installing buf $(BUF_VERSION) with npm"; \
	    npm install --prefix $(ROOT)/.tools/npm --no-audit --no-fund --silent @bufbuild/buf@$(BUF_VERSION); \
	else echo "NOTICE: npm is not installed: the proto compatibility check will be skipped"; fi

# The bolt.v1 compatibility policy (docs/api-compatibility.md): proto/ against the last release.
proto-check: $(BUF)
	$(BUF) breaking proto --against proto-released

$(GRPCURL):
	@if command -v go >/dev/null; then \
	    echo "installing grpcurl $(GRPCURL_VERSION) with go install"; \
	    GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION); \
	else echo "NOTICE: Go is not installed: grpcurl tests will be skipped"; fi

# --- the upgrade test's "newer" agent ----------------------------------------

# integration/tests/test_upgrade.py upgrades a running agent to a different
# binary: a copy of target/debug/bolt-agent stamped with the build label
# "next" (it reports <crate version>+next; scripts/stamp-build.py), so the
# agent is compiled once.
AGENT_NEXT := target/upgrade/bolt-agent-next

.PHONY: agent-next
agent-next: $(AGENT_NEXT)

$(AGENT_NEXT): build
	@mkdir -p $(@D)
	python3 scripts/stamp-build.py $(AGENT) $@ next
	@$@ --version | grep -q '+next$$' || { echo "$@: the stamped copy does not report +next" >&2; rm -f $@; exit 1; }

# --- tests ------------------------------------------------------------------

# Every stage in order, timed, with a table of the times at the end
# (scripts/test-stages.sh); fuzzing is `make fuzz`, not part of it.
test:
	@bash scripts/test-stages.sh build venv tools test-rust test-integration test-python test-java test-cgroup2

test-rust:
	$(CARGO) test --workspace --locked

test-integration: build venv tools prometheus $(AGENT_NEXT)
	PROMETHEUS=$(PROMETHEUS) GRPCURL=$(GRPCURL) BUF=$(BUF) BOLT_AGENT_NEXT_BIN=$(ROOT)/$(AGENT_NEXT) CARGO_DEB=$(CARGO_DEB) \
	    $(PY) -m pytest integration -q -p no:cacheprovider -n 2 --dist loadfile --reruns 1 --reruns-delay 1

# The caps tests again, in a VM booted with the unified hierarchy (this
# machine mounts cgroup v1 only): scripts/cgroup2-vm.sh, bounded in time.
test-cgroup2: build venv vm
	VENV=$(VENV) BOLT_AGENT_BIN=$(AGENT) VIRTIOFSD=$(VIRTIOFSD) bash scripts/cgroup2-vm.sh

test-python: build venv
	@if [ -f clients/python/Makefile ]; then \
	    $(MAKE) -C clients/python test VENV=$(VENV) BOLT_AGENT_BIN=$(AGENT); \
	else echo "NOTICE: no Python client yet"; fi

test-java: build venv
	@if [ -f clients/java/Makefile ]; then \
	    $(MAKE) -C clients/java test-and-install BOLT_AGENT_BIN=$(AGENT) BOLT_MOTO_SERVER=$(VENV)/bin/moto_server; \
	else echo "NOTICE: no Java client yet"; fi

# --- benchmarks (not tests) -------------------------------------------------

bench: release venv
	BOLT_AGENT_BIN=$(AGENT_RELEASE) $(PY) integration/bench/agent_bench.py
	BOLT_AGENT_BIN=$(AGENT_RELEASE) $(PY) integration/bench/pack_bench.py
	BOLT_AGENT_BIN=$(AGENT_RELEASE) $(PY) integration/bench/load_bench.py
	$(MAKE) -C clients/python bench VENV=$(VENV) BOLT_AGENT_BIN=$(AGENT_RELEASE)
	$(MAKE) --no-print-directory bench-cgroup2

# What a cgroup per execution costs: on this host (v1) and in the VM (v2),
# actions created in their cgroup (clone3) or moved there, side by side.
bench-cgroup2: release venv vm
	@out=$$(mktemp -d /tmp/bolt-caps-bench.XXXXXX); \
	BOLT_AGENT_BIN=$(AGENT_RELEASE) $(PY) integration/bench/caps_bench.py measure host $$out/v1.json && \
	BOLT_AGENT_BIN=$(AGENT_RELEASE) $(PY) integration/bench/caps_bench.py measure host $$out/off.json --off && \
	VENV=$(VENV) BOLT_AGENT_BIN=$(AGENT_RELEASE) VIRTIOFSD=$(VIRTIOFSD) BOLT_VM_RWDIR=$$out \
	    BOLT_VM_CMD="$(PY) integration/bench/caps_bench.py measure VM $$out/v2-clone.json --executions 600 && \
	                 $(PY) integration/bench/caps_bench.py measure VM $$out/v2-move.json --move --executions 600" \
	    bash scripts/cgroup2-vm.sh && \
	$(PY) integration/bench/caps_bench.py table $$out/off.json $$out/v1.json $$out/v2-clone.json $$out/v2-move.json

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(ROOT)/.tools $(DEV)

# --- Debian package ---------------------------------------------------------

# cargo-deb, pinned, installed from crates.io once per machine into the
# user's cache (about 40 s on 2 cores), not into each clone.
CARGO_DEB_VERSION := 3.8.0
CARGO_DEB := $(TOOLS_CACHE)/cargo-deb-$(CARGO_DEB_VERSION)/bin/cargo-deb

.PHONY: deb cargo-deb print-cargo-deb
cargo-deb: $(CARGO_DEB)

print-cargo-deb:
	@echo $(CARGO_DEB)

$(CARGO_DEB):
	$(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked \
	    --root $(TOOLS_CACHE)/cargo-deb-$(CARGO_DEB_VERSION)

# Release build + target/debian/bolt-agent_<version>_<arch>.deb (binary, unit,
# /etc/bolt/agent.toml as a conffile, example packs; see packaging/).
deb: $(CARGO_DEB)
	$(CARGO_DEB) -p bolt-agent --locked --output $(ROOT)/target/debian/

# --- fuzzing ----------------------------------------------------------------

# cargo-fuzz from crates.io into the user's cache; the targets (fuzz/README.md)
# need the nightly toolchain, and without it fuzzing is skipped with a notice.
CARGO_FUZZ_ROOT := $(TOOLS_CACHE)/cargo-fuzz
CARGO_FUZZ := $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz
FUZZ_SECONDS ?= 300

.PHONY: fuzz test-fuzz cargo-fuzz
cargo-fuzz: $(CARGO_FUZZ)

$(CARGO_FUZZ):
	$(CARGO) install cargo-fuzz --locked --root $(CARGO_FUZZ_ROOT)

# Every target for FUZZ_SECONDS each, one core.
fuzz:
	@if rustup run nightly rustc --version >/dev/null 2>&1; then \
	    $(MAKE) -s --no-print-directory cargo-fuzz && CARGO_FUZZ=$(CARGO_FUZZ) bash fuzz/run.sh $(FUZZ_SECONDS); \
	else echo "NOTICE: no nightly Rust toolchain (rustup toolchain install nightly): fuzzing skipped"; fi

# Every target for 30 s with the saved regressions; fails on any crash. The
# corpus and the regressions are also replayed by `cargo test` (test-rust).
test-fuzz:
	@if rustup run nightly rustc --version >/dev/null 2>&1; then \
	    $(MAKE) -s --no-print-directory cargo-fuzz && CARGO_FUZZ=$(CARGO_FUZZ) bash fuzz/run.sh 30; \
	else echo "NOTICE: no nightly Rust toolchain (rustup toolchain install nightly): fuzz tests skipped"; fi
