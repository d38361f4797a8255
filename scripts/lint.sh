#!/usr/bin/env bash
# Lints the contracts (buf, offline) and the Python code (ruff).
# Installs buf 1.75.0 into .tools/buf on first use (npm), and copies the
# google/api protos from googleapis-common-protos into .tools/protos, the
# second module of buf.yaml, so no BSR access is needed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BUF_VERSION="1.75.0"
BUF="$ROOT/.tools/buf/node_modules/.bin/buf"

if ! command -v npm >/dev/null; then
  echo "lint.sh: installing npm (buf ships through the npm registry)"
  SUDO=""; [[ "$(id -u)" != "0" ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
fi
if [[ ! -x "$BUF" ]] || [[ "$("$BUF" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  echo "lint.sh: installing buf $BUF_VERSION into .tools/buf"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools/buf" "@bufbuild/buf@$BUF_VERSION"
fi

GOOGLEAPIS_INCLUDE="$("$PYTHON" - <<'PY'
import os, sys
for p in sys.path:
    if p and os.path.isfile(os.path.join(p, "google", "api", "annotations.proto")):
        print(p)
        break
else:
    sys.exit("lint.sh: google/api/annotations.proto not found (pip install googleapis-common-protos)")
PY
)"
rm -rf .tools/protos
mkdir -p .tools/protos/google/api
cp "$GOOGLEAPIS_INCLUDE"/google/api/*.proto .tools/protos/google/api/

"$BUF" lint
echo "lint.sh: buf lint ok"

"$ROOT/.venv/bin/ruff" check .
