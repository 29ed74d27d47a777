#!/usr/bin/env python3
"""Kafka's VerifiableProducer and VerifiableConsumer through kill -9 / restart cycles of the broker.

The measurement behind issue 14's first item: a consumer group consuming while the broker it talks to
is killed with SIGKILL and started again on the same data, several times. Counts what a Kafka user
sees: commits that failed, records delivered more than once, rebalances after the group settled,
and records acknowledged to the producer but never consumed.

    python3 scripts/groups-kill-campaign.py --target sluice --protocol classic
    python3 scripts/groups-kill-campaign.py --target sluice --protocol consumer
    python3 scripts/groups-kill-campaign.py --target kafka --protocol classic

The broker for `sluice` is `target/release/sluice` (or --sluice-bin) on a local-directory store in
a temporary directory; for `kafka` it is scripts/kafka/run-kafka.sh (Apache Kafka 4.4 from Maven
Central, fetched by scripts/kafka/fetch-kafka.sh). The kills happen at fractions of the records
consumed (an event of the consumer, not a clock). Exit status 1 when a record acknowledged to the
producer was never consumed, or when --strict is given and any commit failed or any record was
delivered twice.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "scripts", "kafka", "lib")
TOPIC = "verify"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def java(cls, args, **kwargs):
    cmd = ["java", "-Xmx512m", "-XX:+UseSerialGC",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", LIB + "/*", cls] + args
    return subprocess.Popen(cmd, **kwargs)


class Broker:
    def __init__(self, target, work, sluice_bin):
        self.target = target
        self.work = work
        self.port = free_port()
        self.sluice_bin = sluice_bin
        self.proc = None
        self.starts = 0

    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        log = open(os.path.join(self.work, f"broker-{self.starts}.log"), "wb")
        if self.target == "sluice":
            data = os.path.join(self.work, "sluice-data")
            cmd = [self.sluice_bin, "serve", "--listen", self.bootstrap(),
                   "--data-dir", data, "--store", os.path.join(data, "store"),
                   "--group-initial-rebalance-delay-ms", "0"]
        else:
            cmd = ["bash", os.path.join(ROOT, "scripts", "kafka", "run-kafka.sh"),
                   str(self.port), os.path.join(self.work, "kafka-data"), str(free_port())]
        env = dict(os.environ, NO_COLOR="1")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.starts += 1
        if not wait_for_port(self.port, 120):
            raise SystemExit(f"{self.target} did not listen on {self.bootstrap()} within 120 s")

    def kill(self):
        # run-kafka.sh execs the JVM, so the pid is the broker's in both cases.
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill()


class ConsumerLog:
    """What the VerifiableConsumer reported, updated from its stdout by a thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.upto = {}            # partition -> highest offset consumed
        self.unique = 0
        self.delivered = 0
        self.redelivered = 0
        self.commits_ok = 0
        self.commits_failed = 0
        self.commit_errors = {}
        self.assigned_events = 0
        self.revoked_events = 0
        self.lost_events = 0
        self.rebalances_after_settle = 0
        self.settled = False
        self.other = {}
        self.records = {}         # (partition, offset) -> value, from --verbose record_data

    def feed(self, line):
        try:
            event = json.loads(line)
        except ValueError:
            return
        name = event.get("name")
        with self.lock:
            if name == "record_data":
                self.records[(event["partition"], event["offset"])] = event.get("value")
            elif name == "records_consumed":
                for part in event.get("partitions", []):
                    p = part["partition"]
                    lo, hi = part["minOffset"], part["maxOffset"]
                    count = hi - lo + 1
                    self.delivered += count
                    prev = self.upto.get(p, -1)
                    if lo <= prev:
                        self.redelivered += min(hi, prev) - lo + 1
                    if hi > prev:
                        self.unique += hi - max(lo, prev + 1) + 1
                        self.upto[p] = hi
                if self.unique > 0:
                    self.settled = True
            elif name == "offsets_committed":
                if event.get("success"):
                    self.commits_ok += 1
                else:
                    self.commits_failed += 1
                    error = str(event.get("error"))[:160]
                    self.commit_errors[error] = self.commit_errors.get(error, 0) + 1
            elif name == "partitions_assigned":
                self.assigned_events += 1
                if self.settled:
                    self.rebalances_after_settle += 1
            elif name == "partitions_revoked":
                self.revoked_events += 1
            elif name == "partitions_lost":
                self.lost_events += 1
            else:
                self.other[name] = self.other.get(name, 0) + 1
            self.changed.notify_all()

    def wait_unique(self, at_least, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while self.unique < at_least:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True


def read_lines(stream, sink, copy):
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        copy.write(line)
        sink(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["sluice", "kafka"], default="sluice")
    parser.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--throughput", type=int, default=10_000, help="producer records/s")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--sluice-bin", default=os.path.join(ROOT, "target", "release", "sluice"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on any failed commit or re-delivered record")
    args = parser.parse_args()

    if not os.path.exists(os.path.join(LIB, ".complete")):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "kafka", "fetch-kafka.sh")], check=True)
    if args.target == "sluice" and not os.access(args.sluice_bin, os.X_OK):
        raise SystemExit(f"{args.sluice_bin} not found: cargo build --release -p sluice-server")

    work = tempfile.mkdtemp(prefix=f"groups-kill-{args.target}-")
    broker = Broker(args.target, work, args.sluice_bin)
    consumer = producer = None
    started = time.monotonic()
    try:
        broker.start()
        topic = java("org.apache.kafka.tools.TopicCommand",
                     ["--bootstrap-server", broker.bootstrap(), "--create", "--topic", TOPIC,
                      "--partitions", str(args.partitions), "--replication-factor", "1"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = topic.communicate(timeout=120)
        if topic.returncode != 0:
            raise SystemExit("creating the topic failed:\n" + out.decode())

        log = ConsumerLog()
        consumer_out = open(os.path.join(work, "consumer.jsonl"), "w")
        consumer = java("org.apache.kafka.tools.VerifiableConsumer",
                        ["--bootstrap-server", broker.bootstrap(), "--topic", TOPIC,
                         "--group-id", "verify-group", "--group-protocol", args.protocol,
                         "--reset-policy", "earliest", "--verbose"],
                        stdout=subprocess.PIPE, stderr=open(os.path.join(work, "consumer.err"), "wb"))
        threading.Thread(target=read_lines, args=(consumer.stdout, log.feed, consumer_out),
                         daemon=True).start()

        producer_events = {"acked": 0, "failed": 0}
        acked_records = {}        # (partition, offset) -> value

        def producer_feed(line):
            try:
                event = json.loads(line)
            except ValueError:
                return
            if event.get("name") == "producer_send_success":
                producer_events["acked"] += 1
                acked_records[(event["partition"], event["offset"])] = event.get("value")
            elif event.get("name") == "producer_send_error":
                producer_events["failed"] += 1

        producer_out = open(os.path.join(work, "producer.jsonl"), "w")
        producer = java("org.apache.kafka.tools.VerifiableProducer",
                        ["--bootstrap-server", broker.bootstrap(), "--topic", TOPIC,
                         "--max-messages", str(args.records), "--acks", "-1",
                         "--throughput", str(args.throughput)],
                        stdout=subprocess.PIPE, stderr=open(os.path.join(work, "producer.err"), "wb"))
        producer_reader = threading.Thread(target=read_lines,
                                           args=(producer.stdout, producer_feed, producer_out),
                                           daemon=True)
        producer_reader.start()

        kill_points = [int(args.records * (k + 1) / (args.kills + 1)) for k in range(args.kills)]
        for point in kill_points:
            if not log.wait_unique(point, 600):
                raise SystemExit(f"the consumer did not reach {point} records within 600 s")
            print(f"kill -9 of {args.target} at {log.unique} records consumed "
                  f"({time.monotonic() - started:.1f} s)", flush=True)
            broker.kill()
            broker.start()

        producer.wait(timeout=900)
        producer_reader.join(timeout=60)
        acked = producer_events["acked"]

        def missing_now():
            with log.lock:
                return sum(1 for key, value in acked_records.items()
                           if log.records.get(key) != value)

        # Until the consumer has read every acknowledged record (records whose send failed may
        # have landed too, so a count is not enough), or has read nothing new for 60 s.
        consumed_all, last_unique, quiet_since = False, -1, time.monotonic()
        while time.monotonic() - quiet_since < 60:
            if missing_now() == 0:
                consumed_all = True
                break
            with log.lock:
                if log.unique != last_unique:
                    last_unique, quiet_since = log.unique, time.monotonic()
            time.sleep(0.5)
        consumer.send_signal(signal.SIGTERM)
        try:
            consumer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            consumer.kill()
        time.sleep(0.5)

        with log.lock:
            missing = sum(1 for key, value in acked_records.items()
                          if log.records.get(key) != value)
            report = {
                "target": args.target,
                "protocol": args.protocol,
                "records": args.records,
                "kills": args.kills,
                "producer_acked": acked,
                "producer_failed": producer_events["failed"],
                "consumed_unique": log.unique,
                "acked_not_consumed_at_its_offset": missing,
                "delivered": log.delivered,
                "redelivered": log.redelivered,
                "commits_ok": log.commits_ok,
                "commits_failed": log.commits_failed,
                "commit_errors": log.commit_errors,
                "partitions_assigned_events": log.assigned_events,
                "rebalances_after_first_records": log.rebalances_after_settle,
                "partitions_revoked_events": log.revoked_events,
                "partitions_lost_events": log.lost_events,
                "seconds": round(time.monotonic() - started, 1),
                "work_dir": work,
            }
        print(json.dumps(report, indent=2))
        lost = not consumed_all or missing > 0
        if lost:
            print(f"LOST: {missing} of {acked} acknowledged records not consumed with their value "
                  f"at their offset", file=sys.stderr)
        bad = args.strict and (log.commits_failed > 0 or log.redelivered > 0)
        return 1 if lost or bad else 0
    finally:
        for proc in (producer, consumer):
            if proc and proc.poll() is None:
                proc.kill()
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
