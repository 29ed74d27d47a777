"""librdkafka (confluent-kafka) under a producer_byte_rate quota: produces RECORDS records of
RECORD_BYTES bytes as fast as it can with CLIENT_ID, and reports what the client saw.

Usage: rdkafka_quota_check.py BOOTSTRAP TOPIC CLIENT_ID RECORDS RECORD_BYTES
Prints one line: `throttle_events=N max_throttle_ms=M elapsed_s=E bytes=B`. librdkafka reports
each response's non-zero `throttle_time_ms` through `throttle_cb` (and waits it out itself, as
KIP-219 clients do); the caller compares the rate with the quota.
"""

import sys
import time

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, client_id, records, record_bytes = sys.argv[1:6]
    records, record_bytes = int(records), int(record_bytes)
    throttles = []

    def on_throttle(event):
        throttles.append(event.throttle_time)

    failures = []

    def on_delivery(error, _message):
        if error is not None:
            failures.append(str(error))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 5,
            # Small requests, as a steady producer sends them: a quota delays the request after
            # the one that went over, so one 1 MB request would never be slowed.
            "batch.size": 16384,
            "throttle_cb": on_throttle,
        }
    )
    payload = b"q" * record_bytes
    started = time.monotonic()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    elapsed = time.monotonic() - started
    if left or failures:
        print(f"undelivered={left} failures={failures[:3]}", file=sys.stderr)
        return 1
    max_ms = max(throttles, default=0.0) * 1000.0
    print(
        f"throttle_events={len(throttles)} max_throttle_ms={max_ms:.0f} "
        f"elapsed_s={elapsed:.3f} bytes={records * record_bytes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
