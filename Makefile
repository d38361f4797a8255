# Reels — one Makefile for set-up, code generation, lint, tests, the local mesh.
SHELL := /bin/bash
PY := .venv/bin/python
USER ?= dev-user

.PHONY: setup gen check-gen lint test up down demo token models bench clean

setup:            ## install everything the project needs (idempotent)
	@bash scripts/setup.sh

gen: setup        ## regenerate gen/ (python stubs, type stubs, Envoy descriptor set)
	@bash scripts/gen.sh
	@$(PY) -m reels_dev.infra.envoy render >/dev/null

check-gen: setup  ## fail when gen/ or envoy/envoy.yaml is stale
	@bash scripts/check_gen.sh

lint: setup       ## buf lint (default rules) + ruff
	@bash scripts/lint.sh

models: setup     ## build the ONNX models Triton serves
	@bash scripts/models.sh

test: setup       ## run the whole test suite against real components
	@bash scripts/test.sh

up: setup         ## start the whole mesh on loopback (Envoy on 127.0.0.1:8080)
	@bash scripts/up.sh

demo: up         ## run the mesh, then push one reel through it (upload → publish → play)
	@$(PY) -m reels_dev.demo

down:             ## stop exactly what `make up` started
	@bash scripts/down.sh

token:            ## print a dev JWT: make token USER=alice
	@bash scripts/setup.sh >/dev/null
	@$(PY) -m reels_dev token --user "$(USER)"

bench: setup      ## benchmarks, each beside a same-run baseline (B=upload for one)
	@bash scripts/bench.sh

clean: down
	rm -rf var .pytest_cache
