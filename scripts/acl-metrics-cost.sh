#!/bin/bash
# What the ACL authorizer and the metrics endpoint cost an agent at the fraud load.
#
#   bash scripts/acl-metrics-cost.sh NAME on|off [perf]
#
# Runs a release-build agent on a local directory (port 19092) and `sluice-loadgen` at the fraud
# load (5,000 records/s of 1 KiB, 12 partitions, acks=all, linger 5 ms, one consumer, 40 s after
# 5 s). `on` starts the agent with `--authorizer acl --allow-everyone-if-no-acl-found true
# --metrics-listen 127.0.0.1:19093`, adds 203 ACL bindings with Kafka's AclCommand (200 on other
# topics, a prefixed ALLOW for the load's topic, a wildcard group ALLOW, a prefixed DENY for another
# principal) and scrapes /metrics every second. Prints the agent's CPU ticks (1/100 s) over the
# load; `perf` also records the agent for 30 s at 4,999 Hz into /tmp/acl-metrics-cost/NAME/perf.data.
# Needs: cargo build --release -p sluice-server -p sluice-loadgen; scripts/kafka/lib (the tests'
# Kafka jars, scripts/install-test-deps.sh); java; curl; perf for the profile.
set -u
cd "$(dirname "$0")/.."
NAME=$1; MODE=$2; PERF=${3:-}
D=/tmp/acl-metrics-cost/$NAME; rm -rf "$D"; mkdir -p "$D"
EXTRA=()
if [ "$MODE" = on ]; then EXTRA=(--authorizer acl --allow-everyone-if-no-acl-found true --metrics-listen 127.0.0.1:19093); fi
./target/release/sluice serve --listen 127.0.0.1:19092 --data-dir "$D/data" "${EXTRA[@]}" > "$D/agent.log" 2>&1 &
PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.1; done
if [ "$MODE" = on ]; then
  CP="scripts/kafka/lib/*"
  ACL=(java -cp "$CP" org.apache.kafka.tools.AclCommand --bootstrap-server 127.0.0.1:19092 --add)
  ARGS=(); for i in $(seq 1 10); do ARGS+=(--allow-principal "User:u$i"); done
  for t in $(seq 1 20); do ARGS+=(--topic "other-$t"); done
  "${ACL[@]}" "${ARGS[@]}" --operation Read > "$D/acl.log" 2>&1
  "${ACL[@]}" --allow-principal User:ANONYMOUS --operation All --topic sluice-loadgen --resource-pattern-type prefixed >> "$D/acl.log" 2>&1
  "${ACL[@]}" --allow-principal User:ANONYMOUS --operation All --group '*' >> "$D/acl.log" 2>&1
  "${ACL[@]}" --deny-principal User:mallory --operation Write --topic sluice --resource-pattern-type prefixed >> "$D/acl.log" 2>&1
  ( while kill -0 $PID 2>/dev/null; do curl -s http://127.0.0.1:19093/metrics > /dev/null; sleep 1; done ) &
fi
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
if [ -n "$PERF" ]; then (sleep 8; perf record -F 4999 -g -p $PID -o "$D/perf.data" -- sleep 30 > "$D/perf.log" 2>&1) & fi
./target/release/sluice-loadgen --bootstrap 127.0.0.1:19092 --partitions 12 --rate 5000 --record-bytes 1024 \
    --linger-ms 5 --acks all --duration-s 40 --warmup-s 5 --consumers 1 --out "$D/loadgen" > "$D/loadgen.log" 2>&1
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "$NAME $MODE agent_cpu_ticks=$((t1 - t0)) load=$(cut -d' ' -f1 /proc/loadavg)"
grep -E 'produce latency|end-to-end latency' "$D/loadgen.log"
kill $PID; wait $PID 2>/dev/null
sleep 1
