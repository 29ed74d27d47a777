#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent.
# The engine's tests need nothing else: the S3-API server they talk to (s3s-fs) is built by cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python client used by the agent's optional smoke tests.
if command -v python3 >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check kafka-python >/dev/null 2>&1 \
        || echo "note: kafka-python could not be installed; tests that need it will say so and skip"
fi

# ---------------------------------------------------------------------------------------------------
# End-to-end client matrix (tests/, docs/testing.md): Apache Kafka's jars from Maven Central, the Java
# and Go client programs, and the Python client libraries. Each step is skipped when already done, so
# a second run takes a few seconds. A step that fails prints a note and the run goes on: the matrix
# tests then fail in CI (or skip locally) naming what is missing, while the other suites still run.
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
if command -v python3 >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check -r tests/clients/python/requirements.txt \
        >/dev/null 2>&1 || e2e_note "the Python client libraries could not be installed"
fi
