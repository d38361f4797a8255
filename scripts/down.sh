#!/usr/bin/env bash
# Stop exactly what `make up` started: the honcho process group, then the data
# stores only if up.sh had to start them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f var/run/honcho.pid ]; then
  pid=$(cat var/run/honcho.pid)
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f var/run/honcho.pid
  echo "down: mesh stopped"
fi
bash scripts/datastores.sh stop
