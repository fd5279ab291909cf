#!/usr/bin/env bash
# Stop what up.sh started (by recorded PID only). Data stays under .cache/ for the next start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/deploy/local/prometheus.sh" stop
bash "$ROOT/deploy/local/postgres.sh" stop
bash "$ROOT/deploy/local/kafka.sh" stop
log "stack down"
