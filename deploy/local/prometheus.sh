#!/usr/bin/env bash
# Prometheus and Alertmanager from Debian's packages, run as plain processes with the project's
# config (config/prometheus.yml, config/alert_rules.yml, config/alertmanager.yml).
# Usage: prometheus.sh install|start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

HOME_DIR="$DRIFTLINE_CACHE/prometheus"

install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null && return 0
  [[ $EUID -eq 0 ]] || die "Prometheus is not installed; run as root: apt-get install -y prometheus prometheus-alertmanager"
  log "installing Prometheus and Alertmanager (apt-get)"
  apt-get update -qq >"$DRIFTLINE_LOGS/apt-prometheus.log" 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
    >>"$DRIFTLINE_LOGS/apt-prometheus.log" 2>&1 || die "apt-get install prometheus failed, see $DRIFTLINE_LOGS/apt-prometheus.log"
  # The packages start system services where systemd runs; we run our own processes instead.
  pkill -x prometheus 2>/dev/null && log "stopped the distribution's Prometheus service" || true
  pkill -x prometheus-alertmanager 2>/dev/null || true
}

# Copy the configs, substituting the ports when they differ from the documented defaults.
render_config() {
  mkdir -p "$HOME_DIR/data" "$HOME_DIR/alertmanager-data"
  sed -e "s/127.0.0.1:9108/127.0.0.1:$DRIFTLINE_WORKER_METRICS_PORT/; s/127.0.0.1:9094/127.0.0.1:$ALERTMANAGER_PORT/; s/127.0.0.1:9090/127.0.0.1:$PROMETHEUS_PORT/" \
    "$ROOT/config/prometheus.yml" >"$HOME_DIR/prometheus.yml"
  cp "$ROOT/config/alert_rules.yml" "$HOME_DIR/alert_rules.yml"
  cp "$ROOT/config/alertmanager.yml" "$HOME_DIR/alertmanager.yml"
  promtool check config "$HOME_DIR/prometheus.yml" >"$DRIFTLINE_LOGS/promtool.log" 2>&1 || die "invalid Prometheus config, see $DRIFTLINE_LOGS/promtool.log"
}

start() {
  install
  render_config
  if pid_alive alertmanager; then
    reload "http://127.0.0.1:$ALERTMANAGER_PORT/-/reload" && log "Alertmanager already running: config reloaded"
  else
    port_open "$ALERTMANAGER_PORT" && die "port $ALERTMANAGER_PORT is taken by a process we did not start; set ALERTMANAGER_PORT"
    log "starting Alertmanager on 127.0.0.1:$ALERTMANAGER_PORT"
    nohup prometheus-alertmanager --config.file="$HOME_DIR/alertmanager.yml" \
      --storage.path="$HOME_DIR/alertmanager-data" --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
      --cluster.listen-address="" >"$DRIFTLINE_LOGS/alertmanager.log" 2>&1 &
    echo $! >"$DRIFTLINE_RUN/alertmanager.pid"
  fi
  if pid_alive prometheus; then
    reload "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" && log "Prometheus already running: config and rules reloaded"
  else
    port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by a process we did not start; set PROMETHEUS_PORT"
    log "starting Prometheus on 127.0.0.1:$PROMETHEUS_PORT"
    nohup prometheus --config.file="$HOME_DIR/prometheus.yml" --storage.tsdb.path="$HOME_DIR/data" \
      --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle \
      --storage.tsdb.retention.time=15d >"$DRIFTLINE_LOGS/prometheus.log" 2>&1 &
    echo $! >"$DRIFTLINE_RUN/prometheus.pid"
  fi
  wait_for "Alertmanager" 60 healthy_alertmanager || { tail -20 "$DRIFTLINE_LOGS/alertmanager.log" >&2; die "Alertmanager not ready"; }
  wait_for "Prometheus" 60 healthy_prometheus || { tail -20 "$DRIFTLINE_LOGS/prometheus.log" >&2; die "Prometheus not ready"; }
}

# POST /-/reload: a running server picks up the configs just rendered.
reload() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="POST"), timeout=10)' "$1"; }

healthy_prometheus() { pid_alive prometheus && "$ROOT/deploy/local/healthcheck.py" http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"; }
healthy_alertmanager() { pid_alive alertmanager && "$ROOT/deploy/local/healthcheck.py" http "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready"; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid prometheus; stop_pid alertmanager ;;
  status)
    rc=0
    if healthy_prometheus; then echo "prometheus: up  url=http://127.0.0.1:$PROMETHEUS_PORT"; else echo "prometheus: down"; rc=1; fi
    if healthy_alertmanager; then echo "alertmanager: up  url=http://127.0.0.1:$ALERTMANAGER_PORT"; else echo "alertmanager: down"; rc=1; fi
    exit $rc ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
