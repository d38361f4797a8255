#!/usr/bin/env bash
# Start the mesh on loopback under honcho (Procfile), wait until each part is ready.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/run var/log
if [ -f var/run/honcho.pid ] && kill -0 "$(cat var/run/honcho.pid)" 2>/dev/null; then
  echo "up: already running (pid $(cat var/run/honcho.pid)); make down first"; exit 0
fi
bash scripts/datastores.sh start
export REELS_DATABASE_URL=${REELS_DATABASE_URL:-postgresql+psycopg://postgres:postgres@127.0.0.1:5432/reels}
export OTEL_EXPORTER_OTLP_ENDPOINT=${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4317}
.venv/bin/python -m reels.db upgrade
setsid .venv/bin/honcho start -f Procfile >var/log/mesh.log 2>&1 < /dev/null &
echo $! > var/run/honcho.pid

wait_port() {  # name port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "up: $1 ready on 127.0.0.1:$2"; return 0; fi
    if ! kill -0 "$(cat var/run/honcho.pid)" 2>/dev/null; then
      echo "up: the mesh stopped; see var/log/mesh.log" >&2; tail -30 var/log/mesh.log >&2; exit 1
    fi
    sleep 0.1
  done
  echo "up: $1 not ready on port $2 after $3 s; see var/log/mesh.log" >&2; exit 1
}
wait_port otlp-sink 4317 20
wait_port kafka 9092 30
wait_port triton 18001 60
for svc in upload:50051 transcode:50052 rank:50053 stream:50054 chat:50055; do
  wait_port "svc_${svc%%:*}" "${svc##*:}" 30
done
wait_port envoy 8080 30
echo "up: Reels is running. Try:"
echo "  curl -H \"authorization: Bearer \$(make -s token USER=alice)\" http://127.0.0.1:8080/api/v1/reels"
echo "Logs: var/log/mesh.log   Traces: var/traces/otlp.jsonl   Stop: make down"
