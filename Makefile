# nassync developer entry points. `make demo` and `make test` do all set-up on a
# fresh machine: Debian packages, a Python venv with pinned deps, and the
# Go-built control plane (cached per version in ~/.cache/nassync/bin).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := bubblewrap rsync openssh-server openssh-client util-linux procps lua5.4 libnss-wrapper \
	buildah mmdebstrap containerd runc containernetworking-plugins gcc libc6-dev binutils strace
STAMP := $(VENV)/.installed
CLUSTER := $(PY) -m nassync_dev.cli

.PHONY: deps apt venv binaries image test lint unit cluster-up cluster-down cluster-env run demo bench bench-scale clean

# make cluster-up NODE=kubelet: the process node plus a real kubelet node (containerd, runc, the image).
NODE ?= process

deps: apt venv binaries

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> apt-get install$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# The process node runs movers from host binaries, so the host needs the
	@# image's non-root user (ssh refuses to run for a uid without a passwd entry).
	@getent passwd 65532 >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO useradd --system --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin nassync; }

venv: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

binaries: venv
	bash tools/build.sh all

# The Dockerfile built with buildah on a local Debian base (no Docker engine, no
# registry): an OCI archive in ~/.cache/nassync/image, rebuilt when its inputs change.
image: apt venv
	@$(PY) -m nassync_dev.image

lint: venv
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Builds (or reuses) the image first; the kubelet-node tests (marker `kubelet`,
# tests/node) start the real node themselves. Locally: pytest -m "not kubelet".
# Everything else runs on two workers (pytest-xdist), each with its own local
# cluster, NAS endpoints and operator (session fixtures are per worker);
# --dist loadfile keeps a module on one worker (tests/faults' module clusters).
# The kubelet-node tests run afterwards in one process: there is one real
# kubelet node per machine (machine-wide kubepods cgroups, containerd).
PYTEST_WORKERS ?= 2
test: deps lint image
	$(VENV)/bin/pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile -m "not kubelet"
	$(VENV)/bin/pytest -q -ra -m kubelet

unit: venv
	$(VENV)/bin/pytest -q tests/unit

cluster-up: deps
	@$(CLUSTER) cluster-up --node $(NODE)

cluster-down: venv
	@$(CLUSTER) cluster-down

cluster-env: venv
	@$(CLUSTER) cluster-env

# The operator in the foreground against $KUBECONFIG (the local cluster when unset).
run: venv
	@user_kubeconfig="$$KUBECONFIG"; \
	if [ -z "$$user_kubeconfig" ]; then $(MAKE) -s cluster-up; fi; \
	eval "$$($(CLUSTER) cluster-env)"; \
	if [ -n "$$user_kubeconfig" ]; then export KUBECONFIG="$$user_kubeconfig"; fi; \
	echo ">> KUBECONFIG=$$KUBECONFIG"; \
	kubectl apply -f crds/ && exec $(VENV)/bin/nassync-operator --metrics-port $${METRICS_PORT:-8080} \
	  --health-port $${HEALTH_PORT:-8081} --log-format $${LOG_FORMAT:-text}

demo: deps
	$(PY) -m nassync_dev.demo

bench: venv
	$(PY) bench/hash_bench.py
	$(PY) bench/push_verify_bench.py

# 1,000 runs over 20 targets with 10,000 finished SyncJobs (~30 min on 2 cores); see bench/scale.py --help.
bench-scale: deps
	$(PY) bench/scale.py

clean: cluster-down
	rm -rf .cache
