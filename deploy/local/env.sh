# Shared settings for the native local stack. Sourced by the other scripts; every value can be
# overridden from the environment. Nothing here is secret: the local stack listens on 127.0.0.1 only.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export DRIFTLINE_CACHE="${DRIFTLINE_CACHE:-$ROOT/.cache}"
export DRIFTLINE_RUN="$DRIFTLINE_CACHE/run"          # PID files
export DRIFTLINE_LOGS="$DRIFTLINE_CACHE/logs"        # service logs

export KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
export KAFKA_HOME="$DRIFTLINE_CACHE/kafka"

export PG_PORT="${PG_PORT:-5432}"
export PG_USER="${PG_USER:-driftline}"
export PG_PASSWORD="${PG_PASSWORD:-driftline}"
export PG_DATABASE="${PG_DATABASE:-driftline}"

export PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
export ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9094}"
export ALERTMANAGER_CLUSTER_PORT="${ALERTMANAGER_CLUSTER_PORT:-9095}"
export DRIFTLINE_WORKER_METRICS_PORT="${DRIFTLINE_WORKER_METRICS_PORT:-9108}"

# What the application and the tests read (see config/driftline.yaml).
export DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS="${DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
export DRIFTLINE_POSTGRES_URL="${DRIFTLINE_POSTGRES_URL:-postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE}"
export DRIFTLINE_PROMETHEUS_URL="${DRIFTLINE_PROMETHEUS_URL:-http://127.0.0.1:$PROMETHEUS_PORT}"
export DRIFTLINE_ALERTMANAGER_URL="${DRIFTLINE_ALERTMANAGER_URL:-http://127.0.0.1:$ALERTMANAGER_PORT}"

mkdir -p "$DRIFTLINE_RUN" "$DRIFTLINE_LOGS"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pid_alive NAME: the process recorded in $DRIFTLINE_RUN/NAME.pid is running.
pid_alive() {
  local f="$DRIFTLINE_RUN/$1.pid"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# stop_pid NAME: stop the process we recorded (TERM, then KILL after 20 s). Never touches others.
stop_pid() {
  local f="$DRIFTLINE_RUN/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "$1 did not stop on TERM; killing"; kill -9 "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND until it succeeds or time runs out.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.5
  done
  log "$what is ready"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
