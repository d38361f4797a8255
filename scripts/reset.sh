#!/usr/bin/env bash
# `make reset`: drop this checkout's database and delete its objects, vectors,
# analytics and Redis keys (reels_dev/reset.py says what it touched). Refuses while
# `make up` is running: the services would recreate what it deletes mid-way.
# PostgreSQL and Redis are started for the reset if needed, and stopped again then.
set -euo pipefail
cd "$(dirname "$0")/.."
f=var/run/supervisord.pid
if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
  echo "reset: the mesh is running (make up, supervisord pid $(cat "$f")); run make down first" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "reset: nothing set up yet (no .venv); nothing to reset"; exit 0
fi
started_before=$(ls var/run/started-* 2>/dev/null || true)
bash scripts/datastores.sh start >/dev/null
cleanup() {
  # Stop only the data stores this run started (not ones `make up` started).
  if [ -z "$started_before" ]; then bash scripts/datastores.sh stop; fi
}
trap cleanup EXIT
.venv/bin/python -m reels_dev reset
