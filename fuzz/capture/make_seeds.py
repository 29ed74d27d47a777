#!/usr/bin/env python3
"""Turns a capture (capture.sh OUT_DIR) into the fuzz targets' seed corpora.

    make_seeds.py OUT_DIR

Writes, replacing what is there:
- fuzz/seeds/kafka_request/: each client session's requests, in windows of at most 48 frames
  (the target reads at most 64); a later window starts with the session's CreateTopics requests
  so that its produces find their topics;
- fuzz/seeds/config/: docs/configuration.md's file, environment and flags;
- fuzz/seeds/{decode_object,object_index,commands,checkpoint,log_entry,record_batch}/: the
  bucket's log entries, compacted objects and checkpoints (and the golden objects of
  engine/testdata/format/v1), cut the way each target reads them.
Every seed of the engine's targets starts with the mode byte 0: no checksum repair (real bytes
carry real checksums). Files larger than SEED_BYTES_MAX are skipped, to keep the corpora small.
Seeds named `regression-*` (inputs that once failed) are kept.
"""
import glob
import hashlib
import os
import re
import struct
import sys

SEED_BYTES_MAX = 64 * 1024
FRAMES_PER_SEED = 48
CREATE_TOPICS = 19

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
capture = os.path.abspath(sys.argv[1])
bucket = os.path.join(capture, "data", "store")


def reset(path):
    """Empties a seed directory, but for the inputs that once failed (`regression-*`)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if not name.startswith("regression-"):
            os.remove(os.path.join(path, name))
    return path


def write(directory, name, data):
    if len(data) > SEED_BYTES_MAX:
        return False
    with open(os.path.join(directory, name), "wb") as file:
        file.write(data)
    return True


def parts(*chunks):
    """fuzz/src/lib.rs `join_parts`: each part prefixed by its u32 little-endian length."""
    return b"".join(struct.pack("<I", len(chunk)) + chunk for chunk in chunks)


def frames_of(stream):
    frames, at = [], 0
    while at + 4 <= len(stream):
        (size,) = struct.unpack(">i", stream[at : at + 4])
        frames.append(stream[at : at + 4 + size])
        at += 4 + size
    return frames


def kafka_request():
    out = reset(os.path.join(root, "fuzz/seeds/kafka_request"))
    for path in sorted(glob.glob(os.path.join(capture, "traffic", "*.bin"))):
        name = os.path.basename(path)[: -len(".bin")]
        frames = frames_of(open(path, "rb").read())
        setup = []
        for window, start in enumerate(range(0, len(frames), FRAMES_PER_SEED)):
            chunk = frames[start : start + FRAMES_PER_SEED]
            prefix = [frame for frame in setup if frame not in chunk]
            data = b"".join(prefix + chunk)
            # A window too large for a seed is cut to what fits.
            while len(data) > SEED_BYTES_MAX and len(chunk) > 1:
                chunk = chunk[: len(chunk) // 2]
                data = b"".join(prefix + chunk)
            write(out, "%s-%02d" % (name, window), data)
            setup += [f for f in frames[start : start + FRAMES_PER_SEED] if struct.unpack(">h", f[4:6])[0] == CREATE_TOPICS]
            if window >= 5:
                break


def config():
    out = reset(os.path.join(root, "fuzz/seeds/config"))
    docs = open(os.path.join(root, "docs/configuration.md")).read()
    toml = re.search(r"```toml\n(.*?)```", docs, re.S).group(1).encode()
    environment = b"SLUICE_LISTEN=127.0.0.1:9093\nSLUICE_FLUSH_INTERVAL_MS=5\nSLUICE_AUTO_CREATE_TOPICS=yes\nSLUICE_CPUS=0,1\nSLUICE_STORE=s3://bucket/prefix?endpoint=http://127.0.0.1:9000&path_style=true\n"
    flags = b"--default-partitions=3\n--group-consumer-assignors=range\n--log-retention-ms=-1\n--cpus=0-1\n--store=memory://\n"
    write(out, "defaults", parts(toml, b"", b""))
    write(out, "all-layers", parts(toml, environment, flags))
    write(out, "environment", parts(b"", environment, b""))
    write(out, "flags", parts(b"", b"", flags))
    write(out, "small", parts(b'listen = "[::1]:0"\ncpus = [1]\nstore = "file:///tmp/x"\n', b"SLUICE_IO_MEMORY_BYTES=65536\n", b"--put-copies-max=1\n"))


def trailer(obj):
    """(index_offset, index_len, commands_offset, commands_len) of an object, or None."""
    if len(obj) < 102 or obj[-8:] != b"SLUICEOB":
        return None
    return struct.unpack("<QIQI", obj[-38:-14])


def batches_of(region):
    batches, at = [], 0
    while at + 12 <= len(region):
        (length,) = struct.unpack(">i", region[at + 8 : at + 12])
        if length < 49 or at + 12 + length > len(region):
            break
        batches.append(region[at : at + 12 + length])
        at += 12 + length
    return batches


def engine():
    targets = ["decode_object", "object_index", "commands", "checkpoint", "log_entry", "record_batch"]
    out = {target: reset(os.path.join(root, "fuzz/seeds", target)) for target in targets}
    log = sorted(glob.glob(os.path.join(bucket, "log", "*")))
    compacted = sorted(glob.glob(os.path.join(bucket, "compacted", "*")))
    golden = sorted(glob.glob(os.path.join(root, "engine/testdata/format/v1/*.bin")))
    objects = [(p, open(p, "rb").read()) for p in log + compacted + golden]
    seen_shapes = {}
    seen_commands = set()
    for path, obj in objects:
        name = os.path.basename(os.path.dirname(path)) + "-" + os.path.basename(path)
        fields = trailer(obj)
        if fields and fields[3]:
            # Every distinct commands section (topic changes, commits, swaps...), whatever else
            # its entry holds.
            section = obj[fields[2] : fields[2] + fields[3]]
            if section not in seen_commands and len(seen_commands) < 100:
                seen_commands.add(section)
                write(out["commands"], name, b"\x00" + section)
        # Every distinct shape of object a few times: commands or not, the codecs of its batches,
        # few or many batches. The golden objects always.
        batches = batches_of(obj[64 : fields[2]]) if fields else []
        codecs = {struct.unpack(">h", b[21:23])[0] & 7 for b in batches}
        shape = (bool(fields and fields[3]), tuple(sorted(codecs)), len(batches) > 8)
        if seen_shapes.get(shape, 0) >= 3 and "testdata" not in path:
            continue
        seen_shapes[shape] = seen_shapes.get(shape, 0) + 1
        write(out["decode_object"], name, b"\x00" + obj)
        if not fields:
            continue
        index_offset, index_len, commands_offset, commands_len = fields
        index = obj[index_offset : index_offset + index_len]
        write(out["object_index"], name, b"\x00" + struct.pack("<I", commands_offset - 64) + index)
        for number, batch in enumerate(batches[:4]):
            codec = struct.unpack(">h", batch[21:23])[0] & 7
            write(out["record_batch"], "%s-%d" % (name, number), b"\x00" + batch)
            # The records section alone, decompressed by the codec the mode byte names.
            write(out["record_batch"], "%s-%d-records" % (name, number), bytes([codec << 1]) + batch[61:])
        if len(batches) > 1:
            write(out["record_batch"], name + "-all", b"\x00" + b"".join(batches))
    entries = [open(p, "rb").read() for p in log]
    for count in (1, 2, 4, 8):
        if count <= len(entries):
            write(out["log_entry"], "log-prefix-%d" % count, b"\x00" + parts(*entries[:count]))
    checkpoints = sorted(glob.glob(os.path.join(bucket, "checkpoint", "*")))
    # The first, some in between and the last (the one with the most topics, groups and producers).
    for path in sorted(set(checkpoints[:: max(1, len(checkpoints) // 4)] + checkpoints[-1:])):
        write(out["checkpoint"], os.path.basename(path), b"\x00" + open(path, "rb").read())


kafka_request()
config()
engine()
for directory in sorted(glob.glob(os.path.join(root, "fuzz/seeds/*"))):
    files = os.listdir(directory)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in files)
    print("%-50s %4d seeds %8d bytes" % (os.path.relpath(directory, root), len(files), size))
