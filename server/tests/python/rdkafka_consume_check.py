"""Produces records with librdkafka (confluent-kafka), then consumes them back from the beginning.

Usage: python rdkafka_consume_check.py HOST:PORT TOPIC PARTITIONS RECORDS
The agent must already have TOPIC. Records are produced with acks=all (lz4), then a Consumer
without committed offsets is assigned every partition at OFFSET_BEGINNING and polls until it has
RECORDS records. Every record must come back at the offset the producer was told, with the same
key and value. Prints "ok" on success; used by server/tests/fetch_kafka_python.rs.
"""
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def main() -> int:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partition_count, record_count = int(sys.argv[3]), int(sys.argv[4])
    sent = {}

    def delivered(error, message):
        assert error is None, error
        sent[(message.partition(), message.offset())] = (message.key(), message.value())

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "compression.type": "lz4", "enable.idempotence": False})
    for index in range(record_count):
        key, value = ("key-%d" % index).encode(), ("value-%d-%s" % (index, "y" * (index % 70))).encode()
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(sent) == record_count, len(sent)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-no-commit",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 200,
                         "max.partition.fetch.bytes": 4096})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in range(partition_count)])
    received = {}
    deadline = time.time() + 30
    while len(received) < record_count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        received[(message.partition(), message.offset())] = (message.key(), message.value())
    consumer.close()
    assert len(received) == record_count, (len(received), record_count)
    for position, expected in sent.items():
        assert received.get(position) == expected, (position, expected, received.get(position))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
