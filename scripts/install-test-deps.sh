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
