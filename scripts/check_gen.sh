#!/usr/bin/env bash
# Fails when gen/ or web/src/gen/ is not what scripts/gen.sh would produce from proto/, when
# envoy/envoy.yaml is not its rendering, or when README.md's settings tables are stale.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

scripts/gen.sh "$TMP/gen" "$TMP/web-gen" > /dev/null

if ! diff -r -q --exclude=__pycache__ gen "$TMP/gen"; then
  echo "check_gen: gen/ is stale; run scripts/gen.sh (or make gen) and commit the result." >&2
  exit 1
fi
echo "check_gen: gen/ is up to date."
if ! diff -r -q web/src/gen "$TMP/web-gen"; then
  echo "check_gen: web/src/gen/ is stale; run scripts/gen.sh (or make gen) and commit the result." >&2
  exit 1
fi
echo "check_gen: web/src/gen/ is up to date."

# envoy/envoy.yaml is rendered from reels_dev/infra/envoy.py.
cp envoy/envoy.yaml "$TMP/envoy.committed.yaml"
"${PYTHON:-$ROOT/.venv/bin/python}" -m reels_dev.infra.envoy render > /dev/null
if ! diff -q "$TMP/envoy.committed.yaml" envoy/envoy.yaml > /dev/null; then
  cp "$TMP/envoy.committed.yaml" envoy/envoy.yaml
  echo "check_gen: envoy/envoy.yaml is stale; run make gen and commit the result." >&2
  exit 1
fi
echo "check_gen: envoy/envoy.yaml is up to date."

# README's settings tables are rendered from the Settings dataclasses (reels.config).
cp README.md "$TMP/README.md"
if ! "${PYTHON:-$ROOT/.venv/bin/python}" - "$TMP/README.md" <<'PY'
import sys
from pathlib import Path

from reels.config import render_readme

sys.exit(1 if render_readme(Path(sys.argv[1])) else 0)
PY
then
  echo "check_gen: README.md's settings tables are stale (or their markers are missing);" \
    "run make gen and commit the result." >&2
  exit 1
fi
echo "check_gen: README.md's settings tables are up to date."
