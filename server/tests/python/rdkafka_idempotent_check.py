"""Produces with librdkafka's idempotent producer (InitProducerId, sequence numbers), then reads back.

Usage: python rdkafka_idempotent_check.py HOST:PORT TOPIC PARTITIONS RECORDS
The agent must already have TOPIC. `enable.idempotence=true` makes librdkafka call InitProducerId and
send every batch with a producer id, epoch and base sequence, 5 requests in flight per connection.
Every record must be delivered without error, the offsets of each partition must be exactly
0..count (no duplicate, no gap), and a consumer must read every record back at its offset. Prints
"ok" on success; used by server/tests/idempotent_rdkafka.rs.
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

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                         "enable.idempotence": True, "max.in.flight.requests.per.connection": 5,
                         "batch.num.messages": 50})
    for index in range(record_count):
        key, value = ("key-%d" % index).encode(), ("value-%d" % index).encode()
        producer.produce(topic, key=key, value=value, partition=index % partition_count,
                         on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(sent) == record_count, len(sent)
    for partition in range(partition_count):
        offsets = sorted(offset for (p, offset) in sent if p == partition)
        assert offsets == list(range(len(offsets))), (partition, offsets[:10])

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-no-commit",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 200})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)
                     for partition in range(partition_count)])
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
