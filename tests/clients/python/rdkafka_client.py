#!/usr/bin/env python3
"""librdkafka (through confluent-kafka, whose wheel bundles it) in the end-to-end matrix.

Creates the topic, produces the run's records with acks=all and the chosen codec, then reads every
partition from the beginning up to the high watermark taken after producing, without a consumer group,
and writes the report described in docs/testing.md.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import e2e_common


def common(args):
    """Settings every client of the run gets."""
    settings = {"bootstrap.servers": args.bootstrap}
    if args.client_id is not None:
        settings["client.id"] = args.client_id
    return settings


def create_topic(args):
    admin = AdminClient(common(args))
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
                                  operation_timeout=30, request_timeout=30)
    for future in futures.values():
        try:
            future.result(timeout=60)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def produce(args, report):
    producer = Producer({
        **common(args),
        "acks": "all",
        "compression.type": args.codec,
        # Idempotence needs InitProducerId; the matrix checks plain produce (idempotence is its own test).
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": args.timeout_s * 1000,
    })
    failures = []
    acked = [0]

    def on_delivery(index):
        def callback(error, message):
            if error is not None:
                failures.append("record %d: %s" % (index, error))
            else:
                acked[0] += 1
                report.ack(index, message.partition(), message.offset())
        return callback

    for index in range(args.records):
        r = e2e_common.record(args.seed, index, args.partitions, args.timestamp_base_ms)
        while True:
            try:
                producer.produce(args.topic, value=r.value, key=r.key, partition=r.partition,
                                 timestamp=r.timestamp_ms, headers=r.headers, on_delivery=on_delivery(index))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(args.timeout_s)
    if remaining:
        failures.append("%d records not delivered within %d s" % (remaining, args.timeout_s))
    if failures:
        raise RuntimeError("produce failed: " + "; ".join(failures[:5]))
    return acked[0]


def consume(args, report):
    consumer = Consumer({
        **common(args),
        # Partitions are assigned by hand and nothing is committed, so the group is never joined; the
        # Python wrapper insists on a group.id all the same.
        "group.id": "sluice-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
    })
    try:
        targets = {}
        for partition in range(args.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, partition), timeout=30)
            targets[partition] = high
        consumer.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
        consumed = 0
        pending = {p for p, high in targets.items() if high > 0}
        deadline = time.monotonic() + args.timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError("consume timed out; partitions not at their end: %s" % sorted(pending))
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                partition = message.partition()
                _kind, timestamp_ms = message.timestamp()
                report.rec(partition, message.offset(), message.key(), message.value(), message.headers(),
                           timestamp_ms)
                consumed += 1
                if message.offset() + 1 >= targets[partition]:
                    pending.discard(partition)
        return consumed
    finally:
        consumer.close()


def main():
    args = e2e_common.parse_args("rdkafka_client")
    report = e2e_common.Report(args.report)
    produced = consumed = 0
    try:
        if args.mode in ("produce", "roundtrip"):
            create_topic(args)
            produced = produce(args, report)
        if args.mode in ("consume", "roundtrip"):
            consumed = consume(args, report)
    except Exception as error:  # the report carries the failure to the Rust driver
        report.error(repr(error))
        report.done(produced, consumed)
        print("rdkafka_client: %r" % (error,), file=sys.stderr)
        return 1
    report.done(produced, consumed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
