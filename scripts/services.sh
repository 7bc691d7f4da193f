#!/usr/bin/env bash
# The backing services the tests run against: PostgreSQL, Redis and livekit-server.
#
#   scripts/services.sh run CMD...   start what is not configured yet, run CMD with the
#                                    ATLAS_TEST_* variables set, stop what it started
#
# `make test` and CI (.ci/run -> make test) both go through `run`. PostgreSQL and Redis are
# installed with apt when absent (root, or sudo), then started as throwaway instances on
# loopback, on free ports, in a temporary directory: several checkouts can test at once.
# A variable that is already set (ATLAS_TEST_DATABASE_URL, ATLAS_TEST_REDIS_URL,
# ATLAS_LIVEKIT_SERVER) is used as it is and nothing is started for it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE=""
STARTED_PG=""
STARTED_REDIS=""

log() { echo "services: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; fi
}

# PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local bindir port data
  bindir=$(pg_bindir)
  if [ -z "$bindir" ]; then
    apt_install postgresql
    bindir=$(pg_bindir)
  fi
  [ -n "$bindir" ] || { log "PostgreSQL not found after install"; return 1; }
  port=$(free_port)
  data="$STATE/pg"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >"$STATE/pg-init.log"
  as_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
    >/dev/null
  STARTED_PG="$bindir"
  as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE test" >/dev/null
  export ATLAS_TEST_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/test"
  log "PostgreSQL on 127.0.0.1:$port"
}

start_redis() {
  local port
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$STATE" --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" >/dev/null
  STARTED_REDIS=1
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export ATLAS_TEST_REDIS_URL="redis://127.0.0.1:$port/15"
  log "Redis on 127.0.0.1:$port"
}

stop_all() {
  if [ -n "$STARTED_REDIS" ] && [ -f "$STATE/redis.pid" ]; then
    kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true
  fi
  if [ -n "$STARTED_PG" ]; then
    as_pg "$STARTED_PG/pg_ctl" -D "$STATE/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  [ -n "$STATE" ] && rm -rf "$STATE"
}

run() {
  STATE=$(mktemp -d /tmp/atlas-services.XXXXXX)
  chmod 755 "$STATE"
  trap stop_all EXIT
  [ -n "${ATLAS_TEST_DATABASE_URL:-}" ] || start_postgres
  [ -n "${ATLAS_TEST_REDIS_URL:-}" ] || start_redis
  ATLAS_LIVEKIT_SERVER="$(bash "$ROOT/scripts/livekit.sh")"
  export ATLAS_LIVEKIT_SERVER
  log "livekit-server at $ATLAS_LIVEKIT_SERVER"
  local status=0
  "$@" || status=$?
  return "$status"
}

case "${1:-}" in
  run)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }
    run "$@"
    ;;
  *)
    echo "usage: $0 run CMD..." >&2
    exit 2
    ;;
esac
