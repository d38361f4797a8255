#!/usr/bin/env bash
# Start the mesh on loopback under supervisor (Procfile → var/run/supervisord.conf,
# reels_dev.infra.procfile), wait until each part is ready. Two supervisor groups, so
# `make down` can stop them in order (scripts/down.sh):
#   infra: OTLP sink, Kafka (Tansu behind its PostgreSQL journal), Triton, clamd
#   apps:  the five services and Envoy
# A process that exits is started again by supervisord (backoff while it keeps dying
# within 3 s); the others keep running. `make status` shows state, pid and restarts.
# Logs: var/log/supervisord.log (starts, exits, restarts), var/log/<name>.out.log (each
# program's output), var/log/svc_<name>.log (each service's JSON log).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/run var/log
PIDFILE=var/run/supervisord.pid

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if alive "$PIDFILE"; then
  echo "up: already running (supervisord pid $(cat "$PIDFILE")); make down first"; exit 0
fi

# Ports from the settings (REELS_*_PORT; README "Ports"): part -> port.
declare -A PORT
while read -r part port; do PORT[$part]=$port; done < <(.venv/bin/python -m reels_dev ports)
[ -n "${PORT[envoy]:-}" ] || { echo "up: could not read the ports (python -m reels_dev ports)" >&2; exit 1; }

# Another checkout's mesh (or anything else) on our ports would answer in our place.
busy=()
for part in "${!PORT[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$part]}") 2>/dev/null; then busy+=("${PORT[$part]} ($part)"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  echo "up: already in use on 127.0.0.1: ${busy[*]}; another checkout's make up?" >&2
  echo "    See who: ss -ltnp; or give this checkout other ports (README, \"Ports\")." >&2
  exit 1
fi

bash scripts/datastores.sh start
export REELS_CLAMD_ADDRESS=${REELS_CLAMD_ADDRESS:-127.0.0.1:${PORT[clamd]}}
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:${PORT[otlp-sink]}}
# This checkout's own database (REELS_DATABASE_URL, default reels_<checkout>): created
# if missing and migrated (make setup did it already; this is for scripts/up.sh alone).
if ! out=$(.venv/bin/python -m reels.db upgrade 2>&1); then
  echo "$out" >&2; echo "up: creating/migrating the database failed" >&2; exit 1
fi

rm -f var/log/svc_*.log var/log/*.out.log
: > var/log/supervisord.log
CONF=$(.venv/bin/python -m reels_dev.infra.procfile conf -f Procfile)
ctl() { .venv/bin/supervisorctl -c "$CONF" "$@"; }
# supervisord daemonizes and writes $PIDFILE; its children inherit this environment.
.venv/bin/supervisord -c "$CONF"
for _ in $(seq 1 100); do ctl pid >/dev/null 2>&1 && break; sleep 0.1; done

fail() {
  echo "up: $1; see var/log/supervisord.log and var/log/<name>.out.log (make down cleans up)" >&2
  ctl status >&2 || true
  tail -15 var/log/supervisord.log >&2
  exit 1
}

wait_port() {  # name program port seconds -> 0 ready, 1 timeout or the program gave up
  for _ in $(seq 1 $(( $4 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then echo "up: $1 ready on 127.0.0.1:$3"; return 0; fi
    # FATAL: supervisord gave up restarting it (it kept dying at once).
    if ctl status "$2" 2>/dev/null | grep -q FATAL; then
      echo "up: $1 failed to start; last lines of var/log/${2#*:}.out.log:" >&2
      tail -20 "var/log/${2#*:}.out.log" >&2; return 1
    fi
    sleep 0.1
  done
  echo "up: $1 not ready on port $3 after $4 s" >&2; return 1
}

ctl start 'infra:*' >/dev/null || true  # failures: wait_port says which
for part in otlp-sink:otlp:20 kafka:kafka:60 triton:triton:60 clamd:clamd:60; do
  IFS=: read -r name prog secs <<< "$part"
  wait_port "$name" "infra:$prog" "${PORT[$name]}" "$secs" || fail "$name did not start"
done

# The service ports lie in Linux's ephemeral range (32768-60999): now and then a client
# connection of some process holds one as its source port at the moment a service binds
# it ("Address already in use"). supervisord retries such a start with backoff.
ctl start 'apps:*' >/dev/null || true
for part in svc_upload:upload svc_transcode:transcode svc_rank:rank svc_stream:stream svc_chat:chat envoy:envoy; do
  wait_port "${part%%:*}" "apps:${part##*:}" "${PORT[${part%%:*}]}" 60 || fail "the services did not start"
done
# Listening is not yet healthy: wait (briefly) for health checks and Envoy's view to agree.
healthy=0
for _ in $(seq 1 30); do
  if .venv/bin/python -m reels_dev status >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.5
done
if [ "$healthy" = 0 ]; then
  echo "up: listening, but not everything reports healthy yet:" >&2
  .venv/bin/python -m reels_dev status >&2 || true
fi
echo "up: Reels is running. Try:"
echo "  make demo                       # one reel through the mesh: upload → publish → play"
echo "  curl -H \"authorization: Bearer \$(make -s token AS=alice)\" http://127.0.0.1:${PORT[envoy]}/api/v1/reels"
echo "  make status                     # health, state, pid and restarts of every part"
echo "Logs: make logs (all), make logs S=svc_rank (one), var/log/   Traces: var/traces/otlp.jsonl   Stop: make down"
