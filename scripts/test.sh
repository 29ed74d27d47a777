#!/usr/bin/env bash
# The test command (README): the whole workspace, every crate's unit, integration and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
