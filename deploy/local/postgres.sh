#!/usr/bin/env bash
# PostgreSQL from Debian's packages, as a private instance (own data dir and port), not the
# distribution's cluster: we start and stop only what we own.
# Usage: postgres.sh install|start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install() {
  [[ -n "$(bin_dir)" && -x "$(bin_dir)/initdb" ]] && return 0
  [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed; run as root: apt-get install -y postgresql"
  log "installing PostgreSQL (apt-get)"
  apt-get update -qq >"$DRIFTLINE_LOGS/apt-postgres.log" 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >>"$DRIFTLINE_LOGS/apt-postgres.log" 2>&1 \
    || die "apt-get install postgresql failed, see $DRIFTLINE_LOGS/apt-postgres.log"
}

# The server refuses to run as root: as root, run it as the 'postgres' user. Its data dir lives
# under the cache when that user can reach it, else under /var/lib/postgresql.
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdata() {
  if [[ $EUID -ne 0 ]] || runuser -u postgres -- test -x "$DRIFTLINE_CACHE" 2>/dev/null; then
    echo "$DRIFTLINE_CACHE/postgres/data-$PG_PORT"
  else
    echo "/var/lib/postgresql/driftline-data-$PG_PORT"
  fi
}

start() {
  install
  local bin data; bin="$(bin_dir)"; data="$(pgdata)"
  if pid_alive postgres; then log "PostgreSQL already running (pid $(cat "$DRIFTLINE_RUN/postgres.pid"))"; return 0; fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by a process we did not start; set PG_PORT"
  mkdir -p "$(dirname "$data")"
  [[ $EUID -eq 0 ]] && chown postgres "$(dirname "$data")"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "initialising PostgreSQL data dir $data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      >"$DRIFTLINE_LOGS/postgres-initdb.log" 2>&1 || die "initdb failed, see $DRIFTLINE_LOGS/postgres-initdb.log"
  fi
  local logfile="$DRIFTLINE_LOGS/postgres.log"
  touch "$logfile"; [[ $EUID -eq 0 ]] && chown postgres "$logfile"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$data -c max_connections=200" \
    start >/dev/null || { tail -20 "$logfile" >&2; die "PostgreSQL did not start"; }
  head -1 "$data/postmaster.pid" >"$DRIFTLINE_RUN/postgres.pid"
  echo "$data" >"$DRIFTLINE_RUN/postgres.datadir"
  # Role and database for driftline (idempotent).
  as_pg "$bin/psql" -q -h "$data" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -v user="$PG_USER" -v pass="$PG_PASSWORD" -v db="$PG_DATABASE" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  wait_for "PostgreSQL" 30 healthy || die "PostgreSQL does not answer SELECT 1 as $PG_USER"
}

stop() {
  pid_alive postgres || { rm -f "$DRIFTLINE_RUN/postgres.pid"; return 0; }
  as_pg "$(bin_dir)/pg_ctl" -D "$(cat "$DRIFTLINE_RUN/postgres.datadir")" -m fast -w stop >/dev/null || stop_pid postgres
  rm -f "$DRIFTLINE_RUN/postgres.pid"
}

# SELECT 1 over TCP with the application's credentials.
healthy() {
  PGPASSWORD="$PG_PASSWORD" "$(bin_dir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DATABASE" \
    -tAc 'SELECT 1' 2>/dev/null | grep -qx 1
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if healthy; then echo "postgres: up  url=postgresql://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DATABASE"; else echo "postgres: down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
