#!/usr/bin/env python3
"""A real client against a topic with message.timestamp.type=LogAppendTime.

Creates the topic with that config through the client's admin API, produces records whose
CreateTime is in 2001 (acks=all, the chosen codec), then reads them back from the beginning with no
consumer group and checks, for every record: the key and value it was sent with, timestamp type
LogAppendTime, and a timestamp within the wall-clock interval of the produce (so the broker's clock,
not the producer's). The producer's own view is checked too: each delivery report must carry the
broker's append time, and the consumer must see the same time at that offset.

Prints "ok ..." and exits 0, or prints why not and exits 1. Used by
tests/tests/log_append_time_sluice.rs (docs/testing.md); it runs against Apache Kafka unchanged.
"""

import argparse
import sys
import time

# 9 September 2001: no broker clock is anywhere near it.
PRODUCER_TIMESTAMP_MS = 1_000_000_000_000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def parse_args():
    parser = argparse.ArgumentParser(prog="log_append_time_check")
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT")
    parser.add_argument("--client", choices=("kafka-python", "librdkafka"), required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--codec", choices=CODECS, default="lz4")
    parser.add_argument("--timeout-s", type=int, default=60)
    return parser.parse_args()


def sent_record(index, partitions):
    return index % partitions, ("key-%d" % index).encode(), ("value-%d" % index).encode()


class KafkaPython:
    """kafka-python: ConsumerRecord.timestamp_type is 1 for LogAppendTime."""

    def __init__(self, args):
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.admin import NewTopic

        self.args = args
        self.KafkaConsumer = KafkaConsumer
        self.KafkaProducer = KafkaProducer
        self.TopicPartition = TopicPartition
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=30000)
        try:
            admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1,
                                          topic_configs={"message.timestamp.type": "LogAppendTime"})])
        finally:
            admin.close()

    def produce(self):
        """{(partition, offset): (index, timestamp the producer was told)}"""
        args = self.args
        producer = self.KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5,
                                      compression_type=None if args.codec == "none" else args.codec,
                                      enable_idempotence=False, request_timeout_ms=30000,
                                      max_block_ms=args.timeout_s * 1000)
        try:
            futures = []
            for index in range(args.records):
                partition, key, value = sent_record(index, args.partitions)
                futures.append((index, producer.send(args.topic, key=key, value=value, partition=partition,
                                                     timestamp_ms=PRODUCER_TIMESTAMP_MS + index)))
            producer.flush(timeout=args.timeout_s)
            acked = {}
            for index, future in futures:
                # RecordMetadata.timestamp is the response's log_append_time_ms when it is not -1.
                metadata = future.get(timeout=args.timeout_s)
                acked[(metadata.partition, metadata.offset)] = (index, metadata.timestamp)
            return acked
        finally:
            producer.close(timeout=10)

    def consume(self, expected):
        args = self.args
        consumer = self.KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=None,
                                      enable_auto_commit=False, auto_offset_reset="earliest")
        try:
            partitions = [self.TopicPartition(args.topic, p) for p in range(args.partitions)]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            read = []
            deadline = time.monotonic() + args.timeout_s
            while len(read) < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError("consumed %d of %d records in time" % (len(read), expected))
                for tp, messages in consumer.poll(timeout_ms=500).items():
                    for m in messages:
                        read.append((tp.partition, m.offset, m.key, m.value,
                                     "LogAppendTime" if m.timestamp_type == 1 else "CreateTime", m.timestamp))
            return read
        finally:
            consumer.close()


class Librdkafka:
    """confluent-kafka (librdkafka): Message.timestamp() is (TIMESTAMP_LOG_APPEND_TIME, ms)."""

    def __init__(self, args):
        import confluent_kafka
        from confluent_kafka.admin import AdminClient, NewTopic

        self.args = args
        self.ck = confluent_kafka
        admin = AdminClient({"bootstrap.servers": args.bootstrap})
        futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1,
                                                config={"message.timestamp.type": "LogAppendTime"})],
                                      request_timeout=30)
        for future in futures.values():
            future.result(timeout=args.timeout_s)

    def kind(self, timestamp_type):
        return {self.ck.TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime",
                self.ck.TIMESTAMP_CREATE_TIME: "CreateTime"}.get(timestamp_type, "none")

    def produce(self):
        args = self.args
        producer = self.ck.Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5,
                                     "compression.type": args.codec, "enable.idempotence": False})
        acked = {}
        failures = []

        def on_delivery(index):
            def report(error, message):
                if error is not None:
                    failures.append("record %d: %s" % (index, error))
                    return
                timestamp_type, timestamp = message.timestamp()
                if self.kind(timestamp_type) != "LogAppendTime":
                    failures.append("record %d: delivery report has timestamp type %s"
                                    % (index, self.kind(timestamp_type)))
                acked[(message.partition(), message.offset())] = (index, timestamp)
            return report

        for index in range(args.records):
            partition, key, value = sent_record(index, args.partitions)
            producer.produce(args.topic, key=key, value=value, partition=partition,
                             timestamp=PRODUCER_TIMESTAMP_MS + index, on_delivery=on_delivery(index))
            producer.poll(0)
        remaining = producer.flush(args.timeout_s)
        if remaining:
            raise RuntimeError("%d records not delivered in time" % remaining)
        if failures:
            raise RuntimeError("; ".join(failures[:5]))
        return acked

    def consume(self, expected):
        args = self.args
        # The Python wrapper wants a group id; nothing is joined or committed with assign().
        consumer = self.ck.Consumer({"bootstrap.servers": args.bootstrap, "group.id": "log-append-time-check",
                                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            consumer.assign([self.ck.TopicPartition(args.topic, p, self.ck.OFFSET_BEGINNING)
                             for p in range(args.partitions)])
            read = []
            deadline = time.monotonic() + args.timeout_s
            while len(read) < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError("consumed %d of %d records in time" % (len(read), expected))
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    raise RuntimeError("consumer: %s" % message.error())
                timestamp_type, timestamp = message.timestamp()
                read.append((message.partition(), message.offset(), message.key(), message.value(),
                             self.kind(timestamp_type), timestamp))
            return read
        finally:
            consumer.close()


def check(args, client):
    before_ms = int(time.time() * 1000)
    acked = client.produce()
    after_ms = int(time.time() * 1000) + 1
    if len(acked) != args.records:
        return "%d acknowledgements for %d records" % (len(acked), args.records)
    read = client.consume(args.records)
    append_times = set()
    for partition, offset, key, value, timestamp_type, timestamp in read:
        where = "partition %d offset %d" % (partition, offset)
        if (partition, offset) not in acked:
            return "%s was never acknowledged" % where
        index, acked_timestamp = acked[(partition, offset)]
        if (partition, key, value) != sent_record(index, args.partitions):
            return "%s is not record %d: %r %r" % (where, index, key, value)
        if timestamp_type != "LogAppendTime":
            return "%s has timestamp type %s" % (where, timestamp_type)
        if not before_ms <= timestamp <= after_ms:
            return "%s has timestamp %d, outside the produce's [%d, %d]" % (where, timestamp, before_ms, after_ms)
        if acked_timestamp != timestamp:
            return "%s: the producer was told %d, the consumer reads %d" % (where, acked_timestamp, timestamp)
        append_times.add(timestamp)
    if len(read) != args.records:
        return "read %d records for %d produced" % (len(read), args.records)
    return "ok %s: %d records, LogAppendTime, %d distinct append times within [%d, %d]" % (
        args.client, len(read), len(append_times), before_ms, after_ms)


def main():
    args = parse_args()
    client = KafkaPython(args) if args.client == "kafka-python" else Librdkafka(args)
    verdict = check(args, client)
    print(verdict)
    return 0 if verdict.startswith("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
