#!/usr/bin/env bash
# Idempotent set-up: system packages, the virtualenv, the server binaries, dev keys,
# and the models Triton serves. Quick when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

# 1. System packages (only the missing ones).
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v redis-server >/dev/null || missing+=(redis-server)
if ! command -v pg_ctlcluster >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  missing+=(postgresql)
fi
"$PY" -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# 2. The virtualenv, reinstalled only when a requirements file changed.
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements/base.txt requirements/binaries.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements/base.txt
  rm -rf .tools/pytriton
  .venv/bin/pip install -q --no-deps --target .tools/pytriton -r requirements/binaries.txt
  echo "$want" > "$stamp"
fi
# The repo root and gen/ on the venv's path, so `python -m svc_x` works from anywhere.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$ROOT" "$ROOT/gen" > "$site/reels_repo.pth"

# 3. Data stores reachable with the project's DSNs.
bash scripts/datastores.sh start >/dev/null

# 4. Dev JWT key pair + JWKS (Envoy and the services read them).
.venv/bin/python -m reels_dev keys >/dev/null

# 5. Models served by Triton.
bash scripts/models.sh
echo "setup: ok"
