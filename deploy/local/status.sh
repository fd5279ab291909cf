#!/usr/bin/env bash
# One line per service; exit 1 if any is down. Also prints the variables the app and tests read.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
rc=0
bash "$ROOT/deploy/local/kafka.sh" status || rc=1
bash "$ROOT/deploy/local/postgres.sh" status || rc=1
bash "$ROOT/deploy/local/prometheus.sh" status || rc=1
echo "environment: DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS=$DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS"
echo "             DRIFTLINE_POSTGRES_URL=${DRIFTLINE_POSTGRES_URL//:$PG_PASSWORD@/:***@}"
echo "             DRIFTLINE_PROMETHEUS_URL=$DRIFTLINE_PROMETHEUS_URL DRIFTLINE_ALERTMANAGER_URL=$DRIFTLINE_ALERTMANAGER_URL"
exit $rc
