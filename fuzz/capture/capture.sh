#!/usr/bin/env bash
# Captures real clients' traffic and a real bucket, the raw material of the fuzz seeds:
#
#   fuzz/capture/capture.sh OUT_DIR
#
# Starts a `sluice serve` agent (local-directory store in OUT_DIR/data/store, a checkpoint every 8
# log entries, compaction every second) behind proxy.py, then runs the end-to-end client programs
# (Java kafka-clients, franz-go, librdkafka, kafka-python: every codec; consumer-group members of
# each library and both protocols; the Java DeleteRecords program; kafka-python's admin client)
# through the proxy, a few dozen records each. Every session's requests land in
# OUT_DIR/traffic/SESSION.bin. It waits 75 s for object compaction before stopping the agent.
# Then fuzz/capture/make_seeds.py turns both into seeds.
# Needs what scripts/install-test-deps.sh installs; a client that is missing is skipped with a note.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:?usage: capture.sh OUT_DIR}")
clients="$root/tests/clients"
sluice=${SLUICE_BIN:-$root/target/debug/sluice}
agent_port=${CAPTURE_AGENT_PORT:-19092}
proxy_port=${CAPTURE_PROXY_PORT:-19192}
bootstrap="127.0.0.1:$proxy_port"
mkdir -p "$out/traffic" "$out/reports"
[ -x "$sluice" ] || { echo "no sluice binary at $sluice (cargo build -p sluice-server)" >&2; exit 1; }

"$sluice" serve --listen "127.0.0.1:$agent_port" --advertised-listen "$bootstrap" \
    --data-dir "$out/data" --cpus 0 --checkpoint-interval-entries 8 \
    --compaction-interval-ms 1000 --group-initial-rebalance-delay-ms 0 \
    --group-consumer-session-timeout-ms 6000 --group-consumer-heartbeat-interval-ms 1000 \
    > "$out/agent.log" 2>&1 &
agent=$!
trap 'kill -TERM $agent 2>/dev/null; wait $agent 2>/dev/null' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$agent_port") 2>/dev/null && break
    sleep 0.1
done

# session NAME COMMAND...: runs COMMAND with the proxy recording into traffic/NAME.bin.
session() {
    local name=$1
    shift
    python3 "$here/proxy.py" "$proxy_port" "$agent_port" "$out/traffic/$name.bin" > "$out/reports/$name.proxy" 2>&1 &
    local proxy=$!
    for _ in $(seq 50); do grep -q listening "$out/reports/$name.proxy" 2>/dev/null && break; sleep 0.1; done
    local start=$SECONDS
    if "$@" > "$out/reports/$name.log" 2>&1; then status=ok; else status="failed ($?)"; fi
    kill -TERM "$proxy"
    wait "$proxy"
    echo "$name: $status in $((SECONDS - start)) s, $(stat -c %s "$out/traffic/$name.bin" 2>/dev/null || echo 0) bytes"
}

timestamp_base_ms=$(( ($(date +%s) - 3600) * 1000 ))
common() { echo --bootstrap "$bootstrap" --topic "$1" --records 40 --codec "$2" --mode roundtrip --partitions 4 --seed 7 --timestamp-base-ms "$timestamp_base_ms" --timeout-s 60 --report "$out/reports/$1.jsonl"; }
java_cp="$clients/java/target/classes:$clients/java/target/lib/*"
java_run() { java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$java_cp" "$@"; }
# In a background member, exec so that the signal reaches the JVM itself.
java_exec() { exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$java_cp" "$@"; }

for codec in none gzip snappy lz4 zstd; do
    if command -v java >/dev/null && [ -d "$clients/java/target/lib" ]; then
        # shellcheck disable=SC2046
        session "java-$codec" java_run dev.sluice.e2e.Client $(common "java-$codec" "$codec")
    fi
    if [ -x "$clients/go/e2e-client" ]; then
        # shellcheck disable=SC2046
        session "franz-go-$codec" "$clients/go/e2e-client" $(common "franz-go-$codec" "$codec")
    fi
    # shellcheck disable=SC2046
    session "librdkafka-$codec" python3 "$clients/python/rdkafka_client.py" $(common "librdkafka-$codec" "$codec")
    # shellcheck disable=SC2046
    session "kafka-python-$codec" python3 "$clients/python/kafka_python_client.py" $(common "kafka-python-$codec" "$codec")
done

# Consumer-group members: each reads the java-none topic for a few seconds in its own group,
# committing, then leaves (SIGTERM closes the consumer cleanly).
member_args() { echo --bootstrap "$bootstrap" --topic java-none --group "group-$1" --report "$out/reports/member-$1.jsonl" --name "$1" --session-timeout-ms 6000 --heartbeat-interval-ms 1000 --timeout-s 30; }
member() {
    local name=$1
    shift
    "$@" &
    local pid=$!
    sleep "${MEMBER_SECONDS:-8}"
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    return 0
}
if command -v java >/dev/null && [ -d "$clients/java/target/lib" ]; then
    # shellcheck disable=SC2046
    session group-java-classic member java java_exec dev.sluice.e2e.GroupMember $(member_args java-classic) --protocol classic --assignor cooperative-sticky
    # shellcheck disable=SC2046
    session group-java-consumer member java java_exec dev.sluice.e2e.GroupMember $(member_args java-consumer) --protocol consumer --assignor uniform
    session delete-records-java java_run dev.sluice.e2e.DeleteRecords --bootstrap "$bootstrap" --topic delete-records --records 100 --delete-before 40 --timeout-s 60 --report "$out/reports/delete-records.jsonl"
fi
# shellcheck disable=SC2046
session group-librdkafka member rdkafka python3 "$clients/python/rdkafka_group_member.py" $(member_args librdkafka) --protocol classic --assignor range
if [ -x "$clients/go/e2e-client" ]; then
    # shellcheck disable=SC2046
    session group-franz-go member go "$clients/go/e2e-client" group-member $(member_args franz-go) --protocol classic --assignor cooperative-sticky
fi
session admin-kafka-python python3 "$here/admin.py" "$bootstrap"
# Object compaction merges a run of window objects once it is a minute old: wait for it, so that
# the bucket holds compacted objects (and key-compacted batches of admin-compacted) too.
sleep "${SETTLE_SECONDS:-75}"

kill -TERM $agent
wait $agent
trap - EXIT
echo "agent log: $out/agent.log; bucket: $out/data/store"
