#!/bin/bash
# Where the CPU goes at one step of the `throughput` ladder: which process (the broker, the load
# generator's producer and consumer, the kernel on their behalf) takes the machine's two CPUs.
#
#   bash scripts/ladder-profile.sh sluice|sluice-tls|kafka|kafka-tls MB_PER_SEC [SECONDS]
#
# Starts a release-build agent on a local-directory store (`sluice`, the `sluice-file` target's
# settings) or Apache Kafka (`kafka`, scripts/kafka/run-kafka.sh); the `-tls` variants serve the
# load generator on a SASL_SSL listener with SCRAM-SHA-512, with the files of the bench's
# `*-tls-scram` targets (a self-signed ECDSA P-256 certificate and one user, written by
# `sluice-bench tls-files`). Then `sluice-loadgen` at the ladder's load (64 partitions, 1 KiB
# records, acks=all, linger 5 ms, one consumer) at MB_PER_SEC for SECONDS (default 30) after 5 s,
# and records the whole machine with `perf record -a -g` at 499 Hz for 15 s from 10 s into the run
# (after the optional warm-up, WARM_MB below). Prints the load generator's summary line, the CPU
# seconds of the broker over the run, and `perf report --sort comm` (each process's share of all
# samples; idle shows as `swapper`). Output under /tmp/ladder-profile/TARGET-MB/; delete it
# afterwards. SLUICE_BIN=PATH runs another agent binary (an A/B of two builds). Needs: cargo build
# --release -p sluice-server -p sluice-loadgen (and -p sluice-bench for the `-tls` variants); java
# and the Kafka jars for `kafka` (scripts/install-test-deps.sh); perf.
set -u
cd "$(dirname "$0")/.."
TARGET=$1; MB=$2; SECONDS_RUN=${3:-30}
D=/tmp/ladder-profile/$TARGET-$MB; rm -rf "$D"; mkdir -p "$D"
PORT=19192; TLS_PORT=19194
CLIENT=()
case "$TARGET" in
  *-tls)
    # cert.pem, key.pem, key-and-cert.pem, users.toml (user bench); prints the client properties.
    PROPERTIES=$(./target/release/sluice-bench tls-files --out "$D") || exit 1
    while read -r property; do CLIENT+=(--client-property "$property"); done <<< "$PROPERTIES" ;;
esac
case "$TARGET" in
  sluice|sluice-tls)
    mkdir -p "$D/store"
    TLS=()
    if [ "$TARGET" = sluice-tls ]; then
      TLS=(--tls-listen 127.0.0.1:$TLS_PORT --tls-cert-file "$D/cert.pem" --tls-key-file "$D/key.pem"
           --tls-listen-sasl true --sasl-users-file "$D/users.toml")
    fi
    "${SLUICE_BIN:-./target/release/sluice}" serve --listen 127.0.0.1:$PORT --data-dir "$D/data" --store "file://$D/store" \
        --default-partitions 1 "${TLS[@]}" > "$D/broker.log" 2>&1 &
    PID=$! ;;
  kafka)
    bash scripts/kafka/run-kafka.sh $PORT "$D/kafka" $((PORT + 1)) > "$D/broker.log" 2>&1 &
    PID=$! ;;
  kafka-tls)
    RUN_KAFKA_SASL_SSL_PORT=$TLS_PORT RUN_KAFKA_SSL_PEM="$D/key-and-cert.pem" RUN_KAFKA_SCRAM_USER=bench \
        RUN_KAFKA_SCRAM_PASSWORD=bench-secret \
        bash scripts/kafka/run-kafka.sh $PORT "$D/kafka" $((PORT + 1)) > "$D/broker.log" 2>&1 &
    PID=$! ;;
  *) echo "target: sluice, sluice-tls, kafka or kafka-tls" >&2; exit 2 ;;
esac
BOOTSTRAP_PORT=$PORT; [ ${#CLIENT[@]} -gt 0 ] && BOOTSTRAP_PORT=$TLS_PORT
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$BOOTSTRAP_PORT) 2>/dev/null && break; sleep 0.1; done
# WARM_MB=N: first a 15 s run at N MB/s on another topic, so a JVM broker has compiled its hot
# path before the measured run (as the ladder's lower steps do for it).
if [ -n "${WARM_MB:-}" ]; then
  ./target/release/sluice-loadgen --bootstrap 127.0.0.1:$BOOTSTRAP_PORT "${CLIENT[@]}" --topic warm-up --partitions 64 \
      --mb-per-sec "$WARM_MB" --record-bytes 1024 --linger-ms 5 --acks all --duration-s 15 --warmup-s 0 \
      --consumers 1 --out "$D/warm-up" > "$D/warm-up.log" 2>&1
fi
t0=$(awk '{print $14+$15}' /proc/$PID/stat)
(sleep 10; perf record -a -g -F 499 -o "$D/perf.data" -- sleep 15 > "$D/perf.log" 2>&1) &
PERF=$!
./target/release/sluice-loadgen --bootstrap 127.0.0.1:$BOOTSTRAP_PORT "${CLIENT[@]}" --partitions 64 --mb-per-sec "$MB" --record-bytes 1024 \
    --linger-ms 5 --acks all --duration-s "$SECONDS_RUN" --warmup-s 5 --consumers 1 --drain-timeout-s 20 \
    --out "$D/loadgen" > "$D/loadgen.log" 2>&1
t1=$(awk '{print $14+$15}' /proc/$PID/stat)
wait $PERF
echo "$TARGET @ $MB MB/s: broker CPU $(awk "BEGIN{print ($t1 - $t0) / 100}") s over the run, load $(cut -d' ' -f1 /proc/loadavg)"
grep -E 'throughput|produce latency|end-to-end latency' "$D/loadgen.log"
kill $PID; wait $PID 2>/dev/null
rm -rf "$D/store" "$D/data" "$D/kafka"
perf report -i "$D/perf.data" --sort comm --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -15
