#!/bin/bash
# usage: runret.sh LABEL DURATION   fraud load on a directory-store agent, topic created first with retention.ms=120000
LABEL=$1; DUR=$2; shift 2
BIN=${BIN:-/work/main/target/release}
D=${OUT:-/tmp/s20/ab}/$LABEL; rm -rf $D; mkdir -p $D/data $D/store
PORT=$((19000 + RANDOM % 1000)); MPORT=$((PORT+1000))
SLUICE_LOG_RETENTION_CHECK_INTERVAL_MS=10000 SLUICE_LOG_SEGMENT_DELETE_DELAY_MS=10000 $BIN/sluice serve --listen 127.0.0.1:$PORT --metrics-listen 127.0.0.1:$MPORT --data-dir $D/data --store file://$D/store > $D/agent.log 2>&1 &
PID=$!
for i in $(seq 100); do grep -q "listening on" $D/agent.log && break; sleep 0.1; done
java -cp '/work/main/scripts/kafka/lib/*' org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$PORT --create --topic fraud --partitions 12 --replication-factor 1 --config retention.ms=120000 > $D/topic.log 2>&1 || { echo "topic create failed"; cat $D/topic.log; kill $PID; exit 1; }
TICK=$(getconf CLK_TCK)
cpu() { awk -v t=$TICK '{print ($14+$15)/t}' /proc/$PID/stat; }
C0=$(cpu)
( cd $D && $BIN/sluice-loadgen --bootstrap 127.0.0.1:$PORT --topic fraud --partitions 12 --rate 5000 --record-bytes 1024 --linger-ms 5 --acks all --duration-s $DUR --warmup-s 5 --consumers 1 > $D/loadgen.txt 2>&1 ) &
LG=$!
: > $D/index.txt
while kill -0 $LG 2>/dev/null; do
  sleep 1
  curl -s 127.0.0.1:$MPORT/metrics | awk '/^sluice_index_entries /{print $2}' >> $D/index.txt
done
echo "$LABEL end rss_mib=$(awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$PID/status) cpu_s=$(echo "$(cpu) - $C0" | bc) load=$(cut -d' ' -f1-3 /proc/loadavg) $(grep '^produce latency' $D/loadgen.txt)" | tee $D/summary.txt
kill $PID; wait $PID 2>/dev/null
