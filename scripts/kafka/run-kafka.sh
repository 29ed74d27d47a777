#!/usr/bin/env bash
# Runs one Apache Kafka 4.x KRaft node (broker and controller in one process) on loopback, in the
# foreground, so whoever started it stops it by killing this process (the JVM replaces the shell).
#
#   run-kafka.sh PORT DATA_DIR [CONTROLLER_PORT]
#
# PORT is the client listener (127.0.0.1:PORT); the controller listens on CONTROLLER_PORT (default
# PORT+1). DATA_DIR holds server.properties, the KRaft log dirs and kafka.log; an existing formatted
# DATA_DIR is reused, so a restart on the same DATA_DIR keeps the data. The jars come from Maven
# Central through fetch-kafka.sh (run first, idempotent). Settings favour a quick start on a small
# machine: 512 MiB heap, no rebalance delay, replication factor 1 everywhere.
#
# A second client listener speaking SASL_SSL with SCRAM-SHA-512 is added when these are set:
#   RUN_KAFKA_SASL_SSL_PORT   its port on 127.0.0.1
#   RUN_KAFKA_SSL_PEM         a PEM file holding the listener's unencrypted PKCS#8 private key and
#                             its certificate chain (Kafka's ssl.keystore.type=PEM)
#   RUN_KAFKA_SCRAM_USER, RUN_KAFKA_SCRAM_PASSWORD   one SCRAM-SHA-512 user, added when the
#                             storage is formatted (a DATA_DIR formatted before keeps its users)
# RUN_KAFKA_SEGMENT_DELETE_DELAY_MS, when set, is the broker's log.segment.delete.delay.ms (the
# default of the topic setting file.delete.delay.ms; 60 s): how long the files of a deleted topic or
# segment stay before they are removed (sluice-bench's throughput ladder sets it short, to free
# each step's files before the next).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 PORT DATA_DIR [CONTROLLER_PORT]" >&2
    exit 2
fi
port=$1
data_dir=$2
controller_port=${3:-$((port + 1))}
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/fetch-kafka.sh"
command -v java >/dev/null || { echo "run-kafka: java not found (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

mkdir -p "$data_dir/logs"
data_dir=$(cd "$data_dir" && pwd)
config="$data_dir/server.properties"
sasl_ssl_port=${RUN_KAFKA_SASL_SSL_PORT:-}
listeners="PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}"
advertised="PLAINTEXT://127.0.0.1:${port}"
protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
if [ -n "$sasl_ssl_port" ]; then
    : "${RUN_KAFKA_SSL_PEM:?RUN_KAFKA_SASL_SSL_PORT needs RUN_KAFKA_SSL_PEM}"
    : "${RUN_KAFKA_SCRAM_USER:?RUN_KAFKA_SASL_SSL_PORT needs RUN_KAFKA_SCRAM_USER}"
    : "${RUN_KAFKA_SCRAM_PASSWORD:?RUN_KAFKA_SASL_SSL_PORT needs RUN_KAFKA_SCRAM_PASSWORD}"
    listeners="$listeners,SASL_SSL://127.0.0.1:${sasl_ssl_port}"
    advertised="$advertised,SASL_SSL://127.0.0.1:${sasl_ssl_port}"
    protocols="$protocols,SASL_SSL:SASL_SSL"
fi
cat >"$config" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller_port}
listeners=${listeners}
advertised.listeners=${advertised}
controller.listener.names=CONTROLLER
listener.security.protocol.map=${protocols}
inter.broker.listener.name=PLAINTEXT
log.dirs=${data_dir}/logs
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
PROPS
if [ -n "${RUN_KAFKA_SEGMENT_DELETE_DELAY_MS:-}" ]; then
    echo "log.segment.delete.delay.ms=${RUN_KAFKA_SEGMENT_DELETE_DELAY_MS}" >>"$config"
fi
if [ -n "$sasl_ssl_port" ]; then
    cat >>"$config" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=${RUN_KAFKA_SSL_PEM}
PROPS
fi

# The classpath is every jar in lib/ (the wildcard is expanded by the JVM, not the shell).
java_opts=(-Xmx512m -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn
    -Dorg.slf4j.simpleLogger.showDateTime=true
    -cp "$here/lib/*")
if [ ! -f "$data_dir/logs/meta.properties" ]; then
    # A KRaft cluster id is 16 random bytes in URL-safe base64 without padding (what random-uuid prints).
    # Passed as --cluster-id=ID: one in 64 ids begins with "-", which a separate argument would make
    # an option (the format then fails with "expected one argument").
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    scram=()
    if [ -n "$sasl_ssl_port" ]; then
        scram=(--add-scram "SCRAM-SHA-512=[name=${RUN_KAFKA_SCRAM_USER},password=${RUN_KAFKA_SCRAM_PASSWORD}]")
    fi
    java "${java_opts[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$config" "${scram[@]}" >"$data_dir/format.log" 2>&1 \
        || { cat "$data_dir/format.log" >&2; exit 1; }
fi
exec java "${java_opts[@]}" kafka.Kafka "$config"
