# Reels — one Makefile for set-up, code generation, lint, tests, the local mesh.
SHELL := /bin/bash
PY := .venv/bin/python
comma := ,

# Who `make token` mints a token for: `make token AS=alice`. The login shell sets
# USER (root, ...), so USER counts only when given on the make command line; AS is
# also make's built-in assembler name ("as"), so only an AS given by you counts.
ifneq ($(filter command line environment,$(origin AS)),)
TOKEN_USER := $(AS)
else ifeq ($(origin USER),command line)
TOKEN_USER := $(USER)
else
TOKEN_USER := dev-user
endif

.PHONY: setup gen check-gen lint test up down demo status logs reset token models bench clean

setup:            ## install everything the project needs (idempotent)
	@bash scripts/setup.sh

gen: setup        ## regenerate gen/, web/src/gen/, envoy/envoy.yaml and README's settings tables
	@bash scripts/gen.sh
	@$(PY) -m reels_dev.infra.envoy render >/dev/null
	@$(PY) -m reels.config readme

check-gen: setup  ## fail when gen/, web/src/gen/, envoy/envoy.yaml or README's settings tables are stale
	@bash scripts/check_gen.sh

lint: setup       ## buf lint (default rules) + ruff
	@bash scripts/lint.sh

models: setup     ## build the ONNX models Triton serves
	@bash scripts/models.sh

test: setup       ## run the whole test suite against real components
	@bash scripts/test.sh

up: setup         ## start the whole mesh on loopback under supervisor (Envoy on 127.0.0.1:8080)
	@bash scripts/up.sh

demo: up          ## does it work? run the mesh, push one reel through it (upload → publish → play)
	@$(PY) -m reels_dev.demo

status:           ## health of every component (health checks, process state/pid/restarts, Envoy's view)
	@$(PY) -m reels_dev status

logs:             ## follow one component's log: make logs S=svc_rank (no S: the whole mesh)
	@bash scripts/logs.sh "$(S)"

down:             ## stop exactly what `make up` started (services first, the trace sink last)
	@bash scripts/down.sh

reset:            ## drop this checkout's database, objects, vectors, analytics, Redis keys
	@bash scripts/reset.sh

token:            ## print a dev JWT: make token AS=alice (a moderator: make token AS=mo ROLES=moderator)
	@bash scripts/setup.sh >/dev/null
	@$(PY) -m reels_dev token --user "$(TOKEN_USER)" $(foreach r,$(subst $(comma), ,$(ROLES)),--role $(r))

.PHONY: eval-feed
eval-feed: setup  ## offline feed evaluation: learned ranker vs formulas on simulated worlds (RECSYS.md)
	@bash scripts/eval_feed.sh $(ARGS)

bench: setup      ## benchmarks, each beside a same-run baseline (B=upload for one)
	@bash scripts/bench.sh

clean: down       ## reset, then remove var/ (keys, logs, traces) and caches
	@bash scripts/reset.sh
	rm -rf var .pytest_cache
