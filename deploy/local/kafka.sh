#!/usr/bin/env bash
# Apache Kafka in KRaft combined mode (one node, broker+controller) from Maven Central jars.
# Usage: kafka.sh install|start|stop|status
# A second, private broker (tests: TLS/SCRAM listeners, a broker to restart) is the same script
# with other ports and a cache of its own: DRIFTLINE_CACHE, KAFKA_PORT, KAFKA_CONTROLLER_PORT; and
#   KAFKA_LIB               where the jars are (default $KAFKA_HOME/lib; share one download)
#   KAFKA_EXTRA_PROPERTIES  a file appended to server.properties (later keys win: listeners, TLS)
#   KAFKA_FORMAT_ARGS       more arguments for the storage format, e.g. --add-scram 'SCRAM-SHA-512=[...]'
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

POM="$ROOT/deploy/local/kafka/pom.xml"
LIB="${KAFKA_LIB:-$KAFKA_HOME/lib}"
DATA="$KAFKA_HOME/data"
CONF="$KAFKA_HOME/server.properties"
STAMP="$LIB/.version"

install() {
  command -v java >/dev/null || die "java (17+) is required for Kafka 4.x: apt-get install -y openjdk-17-jre-headless"
  command -v mvn >/dev/null || die "maven is required to fetch Kafka's jars: apt-get install -y maven"
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KAFKA_VERSION" ]]; then return 0; fi
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  rm -rf "$LIB"   # mixed versions in lib/ break the broker
  mvn -q -B -f "$POM" -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIB" >"$DRIFTLINE_LOGS/mvn.log" 2>&1 \
      || die "maven failed, see $DRIFTLINE_LOGS/mvn.log"
  echo "$KAFKA_VERSION" >"$STAMP"
}

write_config() {
  mkdir -p "$DATA"
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
CONF
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then cat "$KAFKA_EXTRA_PROPERTIES" >>"$CONF"; fi
  cat >"$KAFKA_HOME/log4j2.yaml" <<'CONF'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
CONF
}

start() {
  install
  if pid_alive kafka; then log "Kafka already running (pid $(cat "$DRIFTLINE_RUN/kafka.pid"))"; return 0; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process we did not start; set KAFKA_PORT"
  write_config
  # Static quorum (controller.quorum.voters), so format without --standalone; idempotent.
  # shellcheck disable=SC2086 # KAFKA_FORMAT_ARGS is a list of arguments
  eval "set -- ${KAFKA_FORMAT_ARGS:-}"
  java -cp "$LIB/*" kafka.tools.StorageTool format -t driftline-local-cluster0001 -c "$CONF" \
      --ignore-formatted "$@" >"$DRIFTLINE_LOGS/kafka-format.log" 2>&1 \
    || die "formatting Kafka storage failed, see $DRIFTLINE_LOGS/kafka-format.log"
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.yaml" \
      -cp "$LIB/*" kafka.Kafka "$CONF" >"$DRIFTLINE_LOGS/kafka.log" 2>&1 &
  echo $! >"$DRIFTLINE_RUN/kafka.pid"
  wait_for "Kafka" 90 healthy || { tail -30 "$DRIFTLINE_LOGS/kafka.log" >&2; die "Kafka did not answer a metadata request in 90 s"; }
}

# A real metadata request, not just an open port.
healthy() { pid_alive kafka && "$ROOT/deploy/local/healthcheck.py" kafka "127.0.0.1:$KAFKA_PORT"; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid kafka ;;
  status) if healthy; then echo "kafka: up  bootstrap=127.0.0.1:$KAFKA_PORT (Kafka $KAFKA_VERSION)"; else echo "kafka: down"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
