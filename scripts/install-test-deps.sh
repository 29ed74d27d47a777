#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenSSL's headers and pkg-config: the load generator's librdkafka is built with TLS and SASL
# against them (Cargo.toml, `rdkafka`). Debian 12 usually has both; a minimal image may not.
if ! pkg-config --exists openssl 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config; } \
            >/dev/null 2>&1 \
            || echo "note: libssl-dev could not be installed with apt-get; building sluice-loadgen will name it" >&2
    else
        echo "note: OpenSSL headers are missing (apt-get install libssl-dev pkg-config); building sluice-loadgen needs them" >&2
    fi
fi
# The object-store servers of the store conformance suite and the per-store end-to-end tests
# (SeaweedFS, fake-gcs-server, Azurite) into target/store-servers/; s3s-fs is built by cargo.
bash scripts/install-store-servers.sh
# PostgreSQL, Debian's package: the metadata-log sequencer's tests (engine/tests/integration/
# pg_sequencer.rs) start their own server from its binaries in a temporary directory, as the
# `postgres` user when run as root. Without it they skip locally and fail under CI=true.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
            >/dev/null 2>&1 \
            || echo "note: postgresql could not be installed with apt-get; the sequencer tests will name it" >&2
    else
        echo "note: PostgreSQL is missing (apt-get install postgresql); the sequencer tests will name it" >&2
    fi
fi
# promtool (Debian's `prometheus` package; no daemon is started): the metrics test checks the
# agent's /metrics text with `promtool check metrics`. Without it that test skips locally and fails
# under CI=true.
if ! command -v promtool >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
            >/dev/null 2>&1 \
            || echo "note: prometheus (promtool) could not be installed with apt-get; the metrics test will name it" >&2
    else
        echo "note: promtool is missing (apt-get install prometheus); the metrics test will name it" >&2
    fi
fi
# Python clients of the agent's real-client tests (server/tests/*python*.rs, idempotent_rdkafka.rs,
# configs.rs): kafka-python and confluent-kafka (librdkafka). Without them those tests skip locally
# and fail under CI=true, naming the package (server/tests/common: python_with).
if command -v python3 >/dev/null; then
    if ! pip_output=$(python3 -m pip install --quiet --disable-pip-version-check \
        -r server/tests/python/requirements.txt -r tests/clients/python/requirements.txt 2>&1); then
        echo "$pip_output" | tail -n 5 >&2
        echo "note: the Python client libraries could not be installed; the tests that need them will name them" >&2
    fi
else
    echo "note: python3 is missing; the real-client tests will name it" >&2
fi

# ---------------------------------------------------------------------------------------------------
# End-to-end client matrix (tests/, docs/testing.md): Apache Kafka's jars from Maven Central and the
# Java and Go client programs (the Python client libraries are installed above). Each step is skipped
# when already done, so a second run takes a few seconds. A step that fails prints a note and the run
# goes on: the matrix tests then fail in CI (or skip locally) naming what is missing, while the other
# suites still run.
e2e_note() { echo "note: $1; the end-to-end client tests will name what is missing" >&2; }
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless maven; } >/dev/null 2>&1 \
            || e2e_note "java/maven could not be installed with apt-get"
    else
        e2e_note "java and maven are missing (apt-get install openjdk-17-jdk-headless maven)"
    fi
fi
if command -v mvn >/dev/null; then
    bash scripts/kafka/fetch-kafka.sh >/dev/null || e2e_note "Apache Kafka's jars could not be fetched"
    bash tests/clients/build.sh java >/dev/null || e2e_note "the Java client did not build"
fi
if command -v go >/dev/null; then
    (cd tests/clients/go && go mod download) && bash tests/clients/build.sh go \
        || e2e_note "the Go client did not build"
else
    e2e_note "go is missing (the franz-go client needs Go 1.24 or newer)"
fi
