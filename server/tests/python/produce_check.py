"""Produces records with kafka-python (acks=all) to a Sluice agent and checks the offsets.

Usage: python produce_check.py HOST:PORT TOPIC PARTITIONS RECORDS
The agent must already have TOPIC with PARTITIONS partitions. Half the records are sent
uncompressed and half gzip-compressed (the agent stores compressed batches as they are). Every
future must resolve, and per partition the offsets must be exactly 0..n-1. Prints "ok" and exits
0 on success; used by server/tests/kafka_python.rs.
"""
import collections
import sys

from kafka import KafkaProducer


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partition_count, record_count = int(sys.argv[3]), int(sys.argv[4])
    offsets = collections.defaultdict(list)
    for compression, count in (("none", record_count // 2), ("gzip", record_count - record_count // 2)):
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="sluice-test",
            acks="all",
            compression_type=None if compression == "none" else compression,
            linger_ms=5,
            request_timeout_ms=10000,
            retries=0,
        )
        futures = [
            producer.send(topic, key=str(index).encode(), value=("value-%d" % index).encode())
            for index in range(count)
        ]
        producer.flush(timeout=30)
        for future in futures:
            metadata = future.get(timeout=30)
            offsets[metadata.partition].append(metadata.offset)
        producer.close()
    assert set(offsets) <= set(range(partition_count)), offsets.keys()
    total = 0
    for partition, seen in offsets.items():
        seen.sort()
        assert seen == list(range(len(seen))), (partition, seen[:10])
        total += len(seen)
    assert total == record_count, total
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
