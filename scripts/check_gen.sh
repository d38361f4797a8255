#!/usr/bin/env bash
# Fails when gen/ is not what scripts/gen.sh would produce from proto/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

scripts/gen.sh "$TMP/gen" > /dev/null

if ! diff -r -q --exclude=__pycache__ gen "$TMP/gen"; then
  echo "check_gen: gen/ is stale; run scripts/gen.sh (or make gen) and commit the result." >&2
  exit 1
fi
echo "check_gen: gen/ is up to date."

# envoy/envoy.yaml is rendered from reels_dev/infra/envoy.py.
cp envoy/envoy.yaml "$TMP/envoy.committed.yaml"
"${PYTHON:-$ROOT/.venv/bin/python}" -m reels_dev.infra.envoy render > /dev/null
if ! diff -q "$TMP/envoy.committed.yaml" envoy/envoy.yaml > /dev/null; then
  cp "$TMP/envoy.committed.yaml" envoy/envoy.yaml
  echo "check_gen: envoy/envoy.yaml is stale; run make gen and commit the result." >&2
  exit 1
fi
echo "check_gen: envoy/envoy.yaml is up to date."
