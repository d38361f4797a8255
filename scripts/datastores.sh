#!/usr/bin/env bash
# Start PostgreSQL and Redis on 127.0.0.1 only if they are not already running, and
# remember what we started so `stop` ends exactly that and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=var/run
mkdir -p "$RUN"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  echo "datastores: nothing answers on 127.0.0.1:$1" >&2; return 1
}

start() {
  if ! port_open 5432; then
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
    if [ -z "$ver" ]; then echo "datastores: PostgreSQL is not installed; run make setup" >&2; exit 1; fi
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    echo "$ver" > "$RUN/started-postgres"
    wait_port 5432
  fi
  # A fresh Debian cluster wants a password over TCP: give the postgres role the
  # dev password the default DSNs use (harmless where auth is trust).
  if ! PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    $SUDO runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'"
  fi
  if ! port_open 6379; then
    mkdir -p var/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir "$(pwd)/var/redis" --logfile "$(pwd)/var/redis/redis.log" --pidfile "$(pwd)/$RUN/redis.pid"
    echo 1 > "$RUN/started-redis"
    wait_port 6379
  fi
}

stop() {
  if [ -f "$RUN/started-redis" ]; then
    [ -f "$RUN/redis.pid" ] && kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
    rm -f "$RUN/started-redis"
  fi
  if [ -f "$RUN/started-postgres" ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(cat "$RUN/started-postgres")" main stop || true
    rm -f "$RUN/started-postgres"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
