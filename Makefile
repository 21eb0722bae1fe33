# relevo's one front door. `make up` for a local demo, `make test` for every
# test tier. RELEVO_CLUSTER=kind (default: three kind nodes, built offline) or
# local (the single-node host-mode test bed).

SHELL := /bin/bash
export RELEVO_CLUSTER ?= kind
export RELEVO_CACHE ?= /var/cache/relevo
export CARGO_TARGET_DIR ?= $(RELEVO_CACHE)/cargo-target

.PHONY: help up test deps lint unit integration cluster-up cluster-down \
        cluster-kubeconfig smoke e2e bench images

help:
	@echo "make up                 local demo from nothing: cluster, images, operator, samples"
	@echo "make test               every test tier, installing what it needs"
	@echo "make cluster-up|cluster-down|cluster-kubeconfig"
	@echo "make e2e | make bench | make images | make lint | make unit | make integration"

up:
	e2e/up.sh

test:
	e2e/test-all.sh

deps:
	e2e/testbed/deps.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

unit:
	cargo test --workspace --locked

integration:
	e2e/integration.sh

cluster-up:
	e2e/cluster.sh up

cluster-down:
	e2e/cluster.sh down

cluster-kubeconfig:
	@e2e/cluster.sh kubeconfig

smoke:
	e2e/testbed/smoke.sh

images:
	images/build.sh

e2e:
	e2e/run-e2e.sh

bench:
	e2e/bench.sh
