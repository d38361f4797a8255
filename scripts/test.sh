#!/usr/bin/env bash
# Run the whole suite against real components. Fixtures start the broker, Triton,
# Envoy and the services on free loopback ports; PostgreSQL and Redis are started
# here only if they are not running, and stopped again afterwards if we started them.
set -euo pipefail
cd "$(dirname "$0")/.."
started_before=$(ls var/run/started-* 2>/dev/null || true)
bash scripts/datastores.sh start
cleanup() {
  # Stop only the data stores this run started (not ones `make up` started).
  if [ -z "$started_before" ]; then bash scripts/datastores.sh stop; fi
}
trap cleanup EXIT
set +e
.venv/bin/python -m pytest -p no:cacheprovider --durations=15 "${@:--q}"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$rc"
