"""Shared by the Python clients of the end-to-end matrix: arguments, the deterministic record generator
and the report format. Every client (Java, Go, Python) implements the same generator, specified in
docs/testing.md, so the Rust driver can regenerate the expected bytes from (seed, index) alone.
"""

import argparse
import json
import time

MASK64 = (1 << 64) - 1
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def parse_args(client_name):
    parser = argparse.ArgumentParser(prog=client_name)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--codec", choices=CODECS, default="none")
    parser.add_argument("--mode", choices=("produce", "consume", "roundtrip"), default="roundtrip")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timestamp-base-ms", type=int, required=True)
    parser.add_argument("--report", required=True, help="JSON-lines output file")
    parser.add_argument("--timeout-s", type=int, default=120)
    # A cluster's agents read the client's zone from it (`sluice_az=ZONE`); rdkafka_client only.
    parser.add_argument("--client-id", default=None)
    return parser.parse_args()


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class Record:
    __slots__ = ("index", "partition", "key", "value", "headers", "timestamp_ms")


def record(seed, index, partitions, timestamp_base_ms):
    """Record `index` of the run `seed`: see docs/testing.md, "The record generator"."""
    h = splitmix64((seed * 0x100000001B3 + index) & MASK64)
    r = Record()
    r.index = index
    r.partition = index % partitions
    r.key = None if index % 10 == 9 else ("key-%d" % index).encode()
    length = 1 + h % 300
    r.value = bytes(97 + (((h >> ((j % 8) * 8)) & 0xFF) + j) % 26 for j in range(length))
    headers = [("seq", str(index).encode())]
    if index % 3 == 0:
        headers.append(("hash", h.to_bytes(8, "big")))
    if index % 5 == 0:
        headers.append(("empty", b""))
    r.headers = headers
    r.timestamp_ms = timestamp_base_ms + index
    return r


class Report:
    """The JSON-lines report the Rust driver reads: `ack` lines as the producer learns offsets, `rec`
    lines as the consumer reads records, and one `done` line at the end."""

    def __init__(self, path):
        self.file = open(path, "w", buffering=1 << 20)
        self.started = time.monotonic()

    def _write(self, obj):
        self.file.write(json.dumps(obj, separators=(",", ":")))
        self.file.write("\n")

    def ack(self, index, partition, offset):
        self._write({"kind": "ack", "i": index, "p": partition, "o": offset})

    def rec(self, partition, offset, key, value, headers, timestamp_ms):
        self._write({
            "kind": "rec",
            "p": partition,
            "o": offset,
            "k": None if key is None else key.hex(),
            "v": "" if value is None else value.hex(),
            "h": [[name, "" if data is None else data.hex()] for name, data in headers or []],
            "ts": timestamp_ms,
        })

    def error(self, message):
        self._write({"kind": "error", "message": str(message)})

    def done(self, produced, consumed):
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        self._write({"kind": "done", "produced": produced, "consumed": consumed, "elapsed_ms": elapsed_ms})
        self.file.close()
