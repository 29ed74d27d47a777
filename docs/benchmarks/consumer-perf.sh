#!/bin/bash
# Kafka's own perf tools by hand, with the consumer's fetch metrics and the broker's CPU per read:
# ProducerPerformance with its default settings (2,000,000 records of 1 KiB, acks=all) into a new
# 6-partition topic, then ConsumerPerformance twice (--print-metrics). Prints, per read, the
# broker's CPU seconds over the read (utime + stime from /proc), ConsumerPerformance's result line,
# the client's fetch metrics and, for Sluice, the agent's store GET counters.
#
#   BIN=DIR OUT=DIR bash docs/benchmarks/consumer-perf.sh sluice|kafka LABEL [perf]
#
# sluice: DIR/sluice (default target/release) on a local-directory store under OUT/LABEL, with the
# agent's own settings from the environment (SLUICE_*); kafka: scripts/kafka/run-kafka.sh.
# With a third argument `perf`, `perf record -F 499 -g` samples the broker during the second read.
# The Java classes come from scripts/kafka/lib (scripts/kafka/fetch-kafka.sh fetches them).
set -u
T=$1; LABEL=$2; PERF=${3:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$REPO/target/release}
LIB="$REPO/scripts/kafka/lib/*"
D=${OUT:-/tmp/consumer-perf}/$LABEL; rm -rf "$D"; mkdir -p "$D/data" "$D/store"
PORT=$((19000 + RANDOM % 1000)); MPORT=$((PORT + 1000))
if [ "$T" = sluice ]; then
  "$BIN/sluice" serve --metrics-listen 127.0.0.1:$MPORT --listen 127.0.0.1:$PORT --data-dir "$D/data" --store "file://$D/store" > "$D/agent.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$D/agent.log" && break; sleep 0.1; done
else
  bash "$REPO/scripts/kafka/run-kafka.sh" $PORT "$D/data" > "$D/agent.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do java -cp "$LIB" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT --list > /dev/null 2>&1 && break; sleep 1; done
fi
java -cp "$LIB" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT --create --topic t --partitions 6 --replication-factor 1 > "$D/topic.log" 2>&1
java -cp "$LIB" org.apache.kafka.tools.ProducerPerformance --topic t --num-records 2000000 --record-size 1024 --throughput -1 --producer-props bootstrap.servers=127.0.0.1:$PORT acks=all > "$D/producer.log" 2>&1
tail -1 "$D/producer.log"
TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{print ($14 + $15) / t}' /proc/$PID/stat; }
for r in 1 2; do
  C0=$(cpu)
  if [ -n "$PERF" ] && [ $r = 2 ]; then perf record -F 499 -g -p $PID -o "$D/perf.data" > "$D/perf.log" 2>&1 & PP=$!; fi
  java -cp "$LIB" org.apache.kafka.tools.ConsumerPerformance --bootstrap-server 127.0.0.1:$PORT --topic t --num-records 2000000 --timeout 60000 --print-metrics > "$D/consumer$r.log" 2>&1
  if [ -n "$PERF" ] && [ $r = 2 ]; then kill -INT $PP; wait $PP; fi
  echo "read $r: broker cpu_s=$(echo "$(cpu) - $C0" | bc)"
  # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  grep -E "^[0-9]{4}-[0-9]{2}-[0-9]{2} " "$D/consumer$r.log"
  grep -E "fetch-size-avg|fetch-latency-avg|fetch-total|records-per-request-avg" "$D/consumer$r.log" | grep -v "topic=\|node-"
  [ "$T" = sluice ] && curl -s 127.0.0.1:$MPORT/metrics | grep -E '^sluice_store_(inline_gets_total|requests_total)\{pool="hot"(,op="get")?\}'
done
kill $PID; wait $PID 2> /dev/null
[ "$T" = kafka ] && pkill -f "kafka.Kafka.*$D"
true
