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
INFRA=(otlp kafka triton)
mapfile -t APPS < <(sed -nE 's/^([A-Za-z0-9_-]+):.*/\1/p' Procfile | grep -vxF -e otlp -e kafka -e triton)

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
for f in var/run/honcho.pid var/run/honcho-infra.pid; do
  if alive "$f"; then
    echo "up: already running (pid $(cat "$f")); make down first"; exit 0
  fi
done

# Another checkout's mesh (or anything else) on our ports would answer in our place.
busy=()
for port in 4317 9092 18001 50051 50052 50053 50054 50055 8080 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  echo "up: port(s) ${busy[*]} already in use on 127.0.0.1 (another checkout's make up?)." >&2
  echo "    See who: ss -ltnp | grep -E ':($(IFS='|'; echo "${busy[*]}"))\\b'" >&2
  exit 1
fi

bash scripts/datastores.sh start
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4317}
# This checkout's own database (REELS_DATABASE_URL, default reels_<checkout>): created
# if missing and migrated (make setup did it already; this is for scripts/up.sh alone).
if ! out=$(.venv/bin/python -m reels.db upgrade 2>&1); then
  echo "$out" >&2; echo "up: creating/migrating the database failed" >&2; exit 1
fi

rm -f var/log/svc_*.log
: > var/log/mesh.log
setsid .venv/bin/python -m reels_dev.infra.procfile start -f Procfile "${INFRA[@]}" >>var/log/mesh.log 2>&1 < /dev/null &
echo $! > var/run/honcho-infra.pid

wait_port() {  # name port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "up: $1 ready on 127.0.0.1:$2"; return 0; fi
    for f in var/run/honcho-infra.pid var/run/honcho.pid; do
      if [ -f "$f" ] && ! alive "$f"; then
        echo "up: the mesh stopped; see var/log/mesh.log (make down cleans up)" >&2
        tail -30 var/log/mesh.log >&2; exit 1
      fi
    done
    sleep 0.1
  done
  echo "up: $1 not ready on port $2 after $3 s; see var/log/mesh.log (make down cleans up)" >&2; exit 1
}
wait_port otlp-sink 4317 20
wait_port kafka 9092 30
wait_port triton 18001 60

setsid .venv/bin/python -m reels_dev.infra.procfile start -f Procfile "${APPS[@]}" >>var/log/mesh.log 2>&1 < /dev/null &
echo $! > var/run/honcho.pid
for svc in upload:50051 transcode:50052 rank:50053 stream:50054 chat:50055; do
  wait_port "svc_${svc%%:*}" "${svc##*:}" 30
done
wait_port envoy 8080 30
echo "up: Reels is running. Try:"
echo "  make demo                       # one reel through the mesh: upload → publish → play"
echo "  curl -H \"authorization: Bearer \$(make -s token AS=alice)\" http://127.0.0.1:8080/api/v1/reels"
echo "  make status                     # health of every part"
echo "Logs: var/log/mesh.log (all), make logs S=svc_rank (one)   Traces: var/traces/otlp.jsonl   Stop: make down"
