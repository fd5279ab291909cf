#!/usr/bin/env bash
# PostgreSQL from Debian's packages, as a private instance (own data dir and port), not the
# distribution's cluster: we start and stop only what we own.
# Usage: postgres.sh install|start|stop|status|paths
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

# The server refuses to run as root: as root, run it as the 'postgres' user. Everything that user
# touches (data dir, socket dir, log file, its working directory) lives in PG_HOME, which it owns:
# under the cache when running as yourself; as root a directory under /var/tmp named after a hash of
# the cache path (two clones never share it), because the clone may sit under a 0700 directory
# (root's home, `mktemp -d`) that 'postgres' cannot traverse. `postgres.sh paths` prints them.
as_pg() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
pg_home() {
  local legacy="$DRIFTLINE_CACHE/postgres"
  if [[ -n "${PG_HOME:-}" ]]; then echo "$PG_HOME"
  elif [[ $EUID -ne 0 ]]; then echo "$legacy"
  # A data dir made there by an earlier version, still reachable: keep using it.
  elif [[ -f "$legacy/data-$PG_PORT/PG_VERSION" ]] && runuser -u postgres -- test -x "$legacy" 2>/dev/null; then
    echo "$legacy"
  else echo "/var/tmp/driftline-postgres-$(realpath -m "$DRIFTLINE_CACHE" | sha256sum | cut -c1-12)"
  fi
}
PG_HOME="$(pg_home)"
DATA="$PG_HOME/data-$PG_PORT"
LOGFILE="$PG_HOME/postgres-$PG_PORT.log"

# Optional TLS: PG_SSL_CERT, PG_SSL_KEY (and PG_SSL_CA to verify client certificates) are copied
# into the data dir, owned by the server's user with the key 0600 (PostgreSQL refuses it otherwise).
ssl_options() {
  [[ -n "${PG_SSL_CERT:-}" && -n "${PG_SSL_KEY:-}" ]] || return 0
  command install -m 0644 "$PG_SSL_CERT" "$DATA/server.crt"
  command install -m 0600 "$PG_SSL_KEY" "$DATA/server.key"
  [[ -n "${PG_SSL_CA:-}" ]] && command install -m 0644 "$PG_SSL_CA" "$DATA/root.crt"
  [[ $EUID -eq 0 ]] && chown postgres "$DATA"/server.crt "$DATA"/server.key "$DATA"/root.crt 2>/dev/null
  printf -- '-c ssl=on -c ssl_cert_file=%s/server.crt -c ssl_key_file=%s/server.key' "$DATA" "$DATA"
  [[ -n "${PG_SSL_CA:-}" ]] && printf -- ' -c ssl_ca_file=%s/root.crt' "$DATA"
  return 0
}

start() {
  install
  local bin; bin="$(bin_dir)"
  if pid_alive postgres; then log "PostgreSQL already running (pid $(cat "$DRIFTLINE_RUN/postgres.pid"))"; return 0; fi
  port_open "$PG_PORT" && die "port $PG_PORT is taken by a process we did not start; set PG_PORT"
  mkdir -p "$PG_HOME"
  if [[ $EUID -eq 0 ]]; then chown postgres "$PG_HOME"; chmod 0700 "$PG_HOME"; fi
  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "initialising PostgreSQL data dir $DATA"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      >"$DRIFTLINE_LOGS/postgres-initdb.log" 2>&1 || die "initdb failed, see $DRIFTLINE_LOGS/postgres-initdb.log"
  fi
  as_pg touch "$LOGFILE"
  ln -sfn "$LOGFILE" "$DRIFTLINE_LOGS/postgres.log"   # where the other logs are
  local ssl; ssl="$(ssl_options)"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT${ssl:+ (TLS)} (data $DATA)"
  as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$DATA -c max_connections=200 $ssl" \
    start >/dev/null || { tail -20 "$LOGFILE" >&2; die "PostgreSQL did not start"; }
  head -1 "$DATA/postmaster.pid" >"$DRIFTLINE_RUN/postgres.pid"
  echo "$DATA" >"$DRIFTLINE_RUN/postgres.datadir"
  # Role and database for driftline (idempotent). CREATEROLE: the local owner may create the
  # least-privilege role of the processes (`driftline db grant`).
  as_pg "$bin/psql" -q -h "$DATA" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -v user="$PG_USER" -v pass="$PG_PASSWORD" -v db="$PG_DATABASE" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN CREATEROLE PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  wait_for "PostgreSQL" 30 healthy || die "PostgreSQL does not answer SELECT 1 as $PG_USER"
}

stop() {
  pid_alive postgres || { rm -f "$DRIFTLINE_RUN/postgres.pid"; return 0; }
  local data="$DATA"
  [[ -f "$DRIFTLINE_RUN/postgres.datadir" ]] && data="$(cat "$DRIFTLINE_RUN/postgres.datadir")"
  as_pg "$(bin_dir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null || stop_pid postgres
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
  paths) printf 'home %s\ndata %s\nlog %s\n' "$PG_HOME" "$DATA" "$LOGFILE" ;;
  *) echo "usage: $0 install|start|stop|status|paths" >&2; exit 2 ;;
esac
