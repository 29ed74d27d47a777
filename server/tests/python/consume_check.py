"""Produces records with kafka-python, then consumes them back from the beginning and compares.

Usage: python consume_check.py HOST:PORT TOPIC PARTITIONS RECORDS
The agent must already have TOPIC with PARTITIONS partitions. Records are produced (acks=all,
half uncompressed and half gzip), then a KafkaConsumer without a group is assigned every
partition, seeks to the beginning and polls until it has RECORDS records. Every record must come
back at the offset the producer was told, with the same key and value, in offset order per
partition. Prints "ok" and exits 0 on success; used by server/tests/fetch_kafka_python.rs.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partition_count, record_count = int(sys.argv[3]), int(sys.argv[4])
    sent = {}
    for compression, indexes in (("none", range(0, record_count // 2)), ("gzip", range(record_count // 2, record_count))):
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            compression_type=None if compression == "none" else compression,
            linger_ms=5,
            request_timeout_ms=10000,
            retries=0,
        )
        futures = []
        for index in indexes:
            key, value = ("key-%d" % index).encode(), ("value-%d-%s" % (index, "x" * (index % 50))).encode()
            futures.append((key, value, producer.send(topic, key=key, value=value)))
        producer.flush(timeout=30)
        for key, value, future in futures:
            metadata = future.get(timeout=30)
            sent[(metadata.partition, metadata.offset)] = (key, value)
        producer.close()
    assert len(sent) == record_count, len(sent)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        max_partition_fetch_bytes=4096,
        consumer_timeout_ms=1000,
    )
    partitions = [TopicPartition(topic, partition) for partition in range(partition_count)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received = {}
    last_offset = {}
    deadline = time.time() + 30
    while len(received) < record_count and time.time() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                assert record.offset > last_offset.get(tp.partition, -1), (tp, record.offset)
                last_offset[tp.partition] = record.offset
                received[(tp.partition, record.offset)] = (record.key, record.value)
    consumer.close()
    assert len(received) == record_count, (len(received), record_count)
    for position, expected in sent.items():
        assert received.get(position) == expected, (position, expected, received.get(position))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
