#!/usr/bin/env bash
# Stop exactly what `make up` started, in order: the apps group (services + Envoy)
# first, so their last spans and consumer commits still reach the sink and Kafka, then
# the infra group (Tansu, Triton, clamd, the OTLP sink), then supervisord itself, then
# the data stores only if up.sh had to start them. A service drains for up to its grace
# period (10 s) and bounds its final telemetry flush to ~2 s; supervisord waits 15 s
# (reels_dev.infra.procfile) before it would SIGKILL a process group, and down says so
# if anything needed one.
set -euo pipefail
cd "$(dirname "$0")/.."
PIDFILE=var/run/supervisord.pid
CONF=var/run/supervisord.conf
LOG=var/log/supervisord.log
mark=0
[ -f "$LOG" ] && mark=$(wc -l < "$LOG")

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  pid=$(cat "$PIDFILE")
  ctl() { .venv/bin/supervisorctl -c "$CONF" "$@"; }
  ctl stop 'apps:*' >/dev/null || true
  echo "down: services and Envoy stopped"
  ctl stop 'infra:*' >/dev/null || true
  echo "down: Kafka, Triton, clamd and the OTLP sink stopped"
  ctl shutdown >/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "down: supervisord still running after 20 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  echo "down: supervisord stopped"
fi

if [ -f "$LOG" ] && tail -n +"$((mark + 1))" "$LOG" | grep -q "killing '.*' .* with SIGKILL"; then
  echo "down: something had to be SIGKILLed; see the end of $LOG" >&2
fi
bash scripts/datastores.sh stop
