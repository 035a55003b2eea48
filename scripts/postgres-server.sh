#!/usr/bin/env bash
# A PostgreSQL server for Switchboard's tests, loopback only.
#
# Usage: scripts/postgres-server.sh start|stop|url
#   start  use the server on 127.0.0.1:5432 when it answers (trust auth, user postgres);
#          otherwise install PostgreSQL with apt if missing and start a throwaway cluster of
#          our own on 127.0.0.1:$PORT; prints the URL tests connect to. Harmless if up.
#   stop   stop only the cluster this script started.
#   url    print the URL without starting anything.
# Set SWITCHBOARD_TEST_OWN_POSTGRES=1 to use our own cluster even when a local server answers.
set -euo pipefail

PORT=${SWITCHBOARD_TEST_POSTGRES_PORT:-55432}
# The cluster's files must belong to the postgres user, who cannot enter /root.
DATA_DIR=/var/tmp/switchboard-test-postgres
LOCAL_URL="postgres://postgres@127.0.0.1:5432/postgres"
OWN_URL="postgres://postgres@127.0.0.1:$PORT/postgres"

note() { echo "postgres-server: $*" >&2; }
die() { echo "postgres-server: error: $*" >&2; exit 1; }

answers() {
  command -v psql >/dev/null && psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] || return 1
  echo "$dir"
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

start_own() {
  if ! bin_dir >/dev/null || ! command -v psql >/dev/null; then
    "$(dirname "$0")/apt-install.sh" postgresql postgresql-client >&2
  fi
  local bin; bin=$(bin_dir) || die "PostgreSQL binaries not found under /usr/lib/postgresql after installing"
  if [ ! -s "$DATA_DIR/PG_VERSION" ]; then
    note "creating a throwaway cluster in $DATA_DIR"
    mkdir -p "$DATA_DIR"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$DATA_DIR"
    as_postgres "$bin/initdb -D $DATA_DIR -U postgres --auth=trust --encoding=UTF8 >$DATA_DIR.initdb.log 2>&1" \
      || die "initdb failed; see $DATA_DIR.initdb.log"
  fi
  if ! as_postgres "$bin/pg_ctl -D $DATA_DIR status >/dev/null 2>&1"; then
    note "starting it on 127.0.0.1:$PORT"
    # Test data is thrown away: no fsync. Socket in /tmp, TCP on loopback only.
    as_postgres "$bin/pg_ctl -D $DATA_DIR -w -t 30 -l $DATA_DIR/server.log \
      -o '-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200' start >/dev/null" \
      || die "the cluster did not start; see $DATA_DIR/server.log"
  fi
  answers "$OWN_URL" || die "our cluster on port $PORT does not answer; see $DATA_DIR/server.log"
}

case "${1:-}" in
  start)
    if [ "${SWITCHBOARD_TEST_OWN_POSTGRES:-0}" != 1 ] && answers "$LOCAL_URL"; then
      echo "$LOCAL_URL"
    else
      start_own
      echo "$OWN_URL"
    fi
    ;;
  url)
    if [ "${SWITCHBOARD_TEST_OWN_POSTGRES:-0}" != 1 ] && answers "$LOCAL_URL"; then echo "$LOCAL_URL"; else echo "$OWN_URL"; fi
    ;;
  stop)
    if bin=$(bin_dir) && [ -s "$DATA_DIR/PG_VERSION" ]; then
      as_postgres "$bin/pg_ctl -D $DATA_DIR -m fast stop" >/dev/null 2>&1 || true
      note "stopped the cluster in $DATA_DIR"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
