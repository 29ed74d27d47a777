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
cat >"$config" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controller_port}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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
    java "${java_opts[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$config" >"$data_dir/format.log" 2>&1 \
        || { cat "$data_dir/format.log" >&2; exit 1; }
fi
exec java "${java_opts[@]}" kafka.Kafka "$config"
