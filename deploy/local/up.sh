#!/usr/bin/env bash
# Start the whole native stack (idempotent): Kafka, PostgreSQL, Prometheus, Alertmanager; then
# create driftline's topics. Prints where everything listens.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
started=$SECONDS
bash "$ROOT/deploy/local/kafka.sh" start
bash "$ROOT/deploy/local/postgres.sh" start
bash "$ROOT/deploy/local/prometheus.sh" start
bash "$ROOT/deploy/local/chromium.sh"  # the HTML report's browser test
if [[ -x "$ROOT/.cache/venv/bin/driftline" ]]; then
  "$ROOT/.cache/venv/bin/driftline" --config "$ROOT/config/driftline.yaml" topics create
fi
log "stack up in $((SECONDS - started)) s"
bash "$ROOT/deploy/local/status.sh"
