#!/usr/bin/env bash
# Start the mesh on loopback under honcho (Procfile), wait until each part is ready.
# Two honcho groups (reels_dev.infra.procfile: honcho with a stop timeout that fits
# the services' drain), so `make down` can stop them in order (scripts/down.sh):
#   infra (var/run/honcho-infra.pid): OTLP sink, Kafka (Tansu), Triton
#   apps  (var/run/honcho.pid):       the five services and Envoy
# Both write to var/log/mesh.log; each service also to var/log/svc_<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/run var/log
INFRA=(otlp kafka triton clamd)
mapfile -t APPS < <(sed -nE 's/^([A-Za-z0-9_-]+):.*/\1/p' Procfile | grep -vxF -e otlp -e kafka -e triton -e clamd)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
for f in var/run/honcho.pid var/run/honcho-infra.pid; do
  if alive "$f"; then
    echo "up: already running (pid $(cat "$f")); make down first"; exit 0
  fi
done

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

rm -f var/log/svc_*.log
: > var/log/mesh.log
setsid .venv/bin/python -m reels_dev.infra.procfile start -f Procfile "${INFRA[@]}" >>var/log/mesh.log 2>&1 < /dev/null &
echo $! > var/run/honcho-infra.pid

fail() { echo "up: $1; see var/log/mesh.log (make down cleans up)" >&2; tail -30 var/log/mesh.log >&2; exit 1; }

wait_port() {  # name port seconds -> 0 ready, 2 a honcho group stopped, 1 timeout
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "up: $1 ready on 127.0.0.1:$2"; return 0; fi
    for f in var/run/honcho-infra.pid var/run/honcho.pid; do
      if [ -f "$f" ] && ! alive "$f"; then return 2; fi
    done
    sleep 0.1
  done
  echo "up: $1 not ready on port $2 after $3 s" >&2; return 1
}
for part in otlp-sink:20 kafka:30 triton:60 clamd:60; do
  wait_port "${part%%:*}" "${PORT[${part%%:*}]}" "${part##*:}" || fail "${part%%:*} did not start"
done

# The service ports lie in Linux's ephemeral range (32768-60999): now and then a client
# connection of some process holds one as its source port at the moment a service binds
# it ("Address already in use"). That clears in a moment, so the apps group is retried.
for attempt in 1 2 3 4 5; do
  mark=$(wc -l < var/log/mesh.log)
  setsid .venv/bin/python -m reels_dev.infra.procfile start -f Procfile "${APPS[@]}" >>var/log/mesh.log 2>&1 < /dev/null &
  echo $! > var/run/honcho.pid
  rc=0
  for part in svc_upload svc_transcode svc_rank svc_stream svc_chat envoy; do
    wait_port "$part" "${PORT[$part]}" 30 || { rc=$?; break; }
  done
  [ "$rc" = 0 ] && break
  if [ "$rc" = 2 ] && [ "$attempt" -lt 5 ] && alive var/run/honcho-infra.pid \
      && tail -n +"$((mark + 1))" var/log/mesh.log | grep -q "Address already in use"; then
    echo "up: a service port was briefly taken by another connection; starting the services again"
    for _ in $(seq 1 200); do alive var/run/honcho.pid || break; sleep 0.1; done
    continue
  fi
  fail "the services did not start"
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
echo "  make status                     # health of every part"
echo "Logs: var/log/mesh.log (all), make logs S=svc_rank (one)   Traces: var/traces/otlp.jsonl   Stop: make down"
