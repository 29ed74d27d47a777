#!/usr/bin/env python3
"""kafka-python (a pure-Python client) in the end-to-end matrix.

Same steps as rdkafka_client.py: create the topic, produce with acks=all and the chosen codec, then
read every partition from the beginning up to the high watermark, with no consumer group, and write
the report described in docs/testing.md.
"""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

import e2e_common


def create_topic(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=30000)
    try:
        admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def produce(args, report):
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        compression_type=None if args.codec == "none" else args.codec,
        # Idempotence needs InitProducerId; the matrix checks plain produce (idempotence is its own test).
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=30000,
        max_block_ms=args.timeout_s * 1000,
    )
    try:
        futures = []
        for index in range(args.records):
            r = e2e_common.record(args.seed, index, args.partitions, args.timestamp_base_ms)
            future = producer.send(args.topic, value=r.value, key=r.key, headers=r.headers,
                                   partition=r.partition, timestamp_ms=r.timestamp_ms)
            futures.append((index, future))
        producer.flush(timeout=args.timeout_s)
        acked = 0
        for index, future in futures:
            metadata = future.get(timeout=args.timeout_s)
            report.ack(index, metadata.partition, metadata.offset)
            acked += 1
        return acked
    finally:
        producer.close(timeout=10)


def consume(args, report):
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = [TopicPartition(args.topic, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        targets = {tp.partition: high for tp, high in consumer.end_offsets(partitions).items()}
        pending = {p for p, high in targets.items() if high > 0}
        consumed = 0
        deadline = time.monotonic() + args.timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError("consume timed out; partitions not at their end: %s" % sorted(pending))
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for message in records:
                    report.rec(tp.partition, message.offset, message.key, message.value, message.headers,
                               message.timestamp)
                    consumed += 1
                    if message.offset + 1 >= targets[tp.partition]:
                        pending.discard(tp.partition)
        return consumed
    finally:
        consumer.close()


def main():
    args = e2e_common.parse_args("kafka_python_client")
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
        print("kafka_python_client: %r" % (error,), file=sys.stderr)
        return 1
    report.done(produced, consumed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
