#!/usr/bin/env python3
"""A consumer-group member on librdkafka (through confluent-kafka) for the group scenarios
(docs/testing.md, "Consumer groups").

Subscribes to the topic in a group, processes each record by logging it, commits synchronously after
each batch and reports every rebalance callback, one JSON object per line, flushed at once. SIGTERM
closes the consumer (a clean leave); SIGKILL is a crash. `t` is wall-clock microseconds.
"""

import argparse
import json
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition


def parse_args():
    parser = argparse.ArgumentParser(prog="rdkafka_group_member")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--protocol", choices=("classic", "consumer"), default="classic")
    parser.add_argument("--assignor", default="range", help="range, roundrobin or cooperative-sticky")
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=0, help="records per second, 0 for no limit")
    parser.add_argument("--pace-file", default="", help="once this file exists, --rate no longer applies")
    parser.add_argument("--log-committed", choices=("true", "false"), default="false")
    parser.add_argument("--timeout-s", type=int, default=300)
    parser.add_argument("--name", default="member")
    return parser.parse_args()


def now_us():
    return time.time_ns() // 1000


class Report:
    def __init__(self, path):
        self.file = open(path, "w", encoding="utf-8")

    def write(self, kind, **fields):
        line = {"kind": kind, "t": now_us()}
        line.update(fields)
        self.file.write(json.dumps(line, separators=(",", ":")))
        self.file.write("\n")
        self.file.flush()

    def close(self):
        self.file.close()


def sequence(message):
    for name, value in message.headers() or []:
        if name == "seq" and value is not None:
            return int(value.decode("ascii"))
    return -1


def main():
    args = parse_args()
    report = Report(args.report)
    stopping = [False]

    def on_term(_signum, _frame):
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    if args.protocol == "classic":
        conf["session.timeout.ms"] = args.session_timeout_ms
        conf["heartbeat.interval.ms"] = args.heartbeat_interval_ms
        conf["partition.assignment.strategy"] = args.assignor
    else:
        conf["group.protocol"] = "consumer"
        if args.assignor:
            conf["group.remote.assignor"] = args.assignor
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    consumer = None
    owned = set()
    # Processed and not yet committed: partition -> the offset to commit.
    pending = {}
    consumed = 0
    exit_code = 0

    def change(kind, partitions, add):
        delta = sorted(tp.partition for tp in partitions)
        if add:
            owned.update(delta)
        else:
            owned.difference_update(delta)
        report.write(kind, partitions=delta, owned=sorted(owned))

    def on_assign(c, partitions):
        change("assigned", partitions, True)
        if args.log_committed == "true" and partitions:
            committed = c.committed([TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=10)
            # librdkafka answers OFFSET_INVALID (-1001) for a partition with no committed offset.
            offsets = sorted([tp.partition, tp.offset if tp.offset >= 0 else -1] for tp in committed)
            report.write("committed_fetch", offsets=offsets)

    def commit_pending(partitions):
        """Commits what was processed on `partitions` and not committed yet. A refused commit (a
        rebalance in progress, an illegal generation, a timeout) stays pending: it is retried after
        the next poll or in the revocation callback; if the partition is lost first, its records
        stay uncommitted and whoever owns it next reads them again."""
        offsets = {p: pending[p] for p in partitions if p in pending}
        if not offsets:
            return
        try:
            result = consumer.commit(
                offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()], asynchronous=False)
        except KafkaException as error:
            report.write("commit_failed", message=str(error))
            return
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            report.write("commit_failed", message="; ".join("%d: %s" % (tp.partition, tp.error) for tp in failed))
            return
        report.write("committed", offsets=sorted([p, o] for p, o in offsets.items()))
        for p in offsets:
            del pending[p]

    def on_revoke(_c, partitions):
        # The last chance to commit what was processed: the next owner starts at the commit.
        revoked = [tp.partition for tp in partitions]
        commit_pending(revoked)
        for p in revoked:
            pending.pop(p, None)
        change("revoked", partitions, False)

    def on_lost(_c, partitions):
        for tp in partitions:
            pending.pop(tp.partition, None)
        change("lost", partitions, False)

    try:
        consumer = Consumer(conf)
        report.write("started", name=args.name)
        consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        deadline = time.monotonic() + args.timeout_s
        next_batch = time.monotonic()
        while not stopping[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("member ran past --timeout-s %d" % args.timeout_s)
            messages = consumer.consume(num_messages=10, timeout=0.2)
            for message in messages:
                if message.error() is not None:
                    # Partition EOF is off; anything else is worth seeing in the report.
                    report.write("client_error", message=str(message.error()))
                    continue
                report.write("consumed", p=message.partition(), o=message.offset(), i=sequence(message))
                pending[message.partition()] = message.offset() + 1
                consumed += 1
            # Also when nothing came: a commit refused during a rebalance is retried once it is over.
            commit_pending(list(pending))
            if not messages:
                continue
            if args.rate > 0 and not (args.pace_file and os.path.exists(args.pace_file)):
                next_batch = max(next_batch, time.monotonic()) + len(messages) / args.rate
                pause = next_batch - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    except Exception as error:  # the report carries the failure to the Rust driver
        report.write("error", message=repr(error))
        print("rdkafka_group_member: %r" % (error,), file=sys.stderr)
        exit_code = 1
    finally:
        if consumer is not None:
            report.write("closing")
            try:
                consumer.close()
            except Exception as error:
                report.write("error", message="close: %r" % (error,))
                exit_code = 1
            report.write("closed")
        report.write("done", consumed=consumed)
        report.close()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
