#!/usr/bin/env bash
# The offline feed evaluation (../shared/RECSYS.md, "Evaluation"): 5 seeded
# simulated worlds, every policy on the same day-T+1 candidates, paired
# bootstrap CIs. numpy only; runs in .venv. Exit 1 when the goal is not met.
# Extra arguments go to the evaluator: make eval-feed ARGS="--seeds 1 --small".
set -euo pipefail
cd "$(dirname "$0")/.."
# Two BLAS threads at most: the run is sized for 2 cores, and more threads only
# fight each other on these small matrices.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m recsim.evaluate "$@"
