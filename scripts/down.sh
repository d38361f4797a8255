#!/usr/bin/env bash
# Stop exactly what `make up` started, in order: the apps group (services + Envoy)
# first, so their last spans and consumer commits still reach the sink and Kafka, then
# the infra group (Tansu, Triton, the OTLP sink), then the data stores only if up.sh
# had to start them. A service drains for up to its grace period (10 s) and bounds its
# final telemetry flush to ~2 s; honcho (reels_dev.infra.procfile) waits 15 s before it
# would SIGKILL anything, and down says so if anything needed one.
set -euo pipefail
cd "$(dirname "$0")/.."
mark=0
[ -f var/log/mesh.log ] && mark=$(wc -l < var/log/mesh.log)

stop_group() {  # pidfile label
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    # honcho is a session leader (setsid); it forwards SIGTERM to each process group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down: $2 still running after 20 s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$1"
  echo "down: $2 stopped"
}
stop_group var/run/honcho.pid "services and Envoy"
stop_group var/run/honcho-infra.pid "Kafka, Triton and the OTLP sink"

if [ -f var/log/mesh.log ] && tail -n +"$((mark + 1))" var/log/mesh.log | grep -q "sending SIGKILL"; then
  echo "down: something had to be SIGKILLed; see the end of var/log/mesh.log" >&2
fi
bash scripts/datastores.sh stop
