#!/usr/bin/env bash
# Builds the client programs of the end-to-end matrix: build.sh [java|go|python|all] (default all).
# Idempotent and quick when nothing changed: the Java client is rebuilt only when its sources or pom
# are newer than the last build, and `go build` has its own cache. The Rust harness calls this before
# running a client; scripts/install-test-deps.sh calls it once with the network available.
set -euo pipefail
cd "$(dirname "$0")"
what=${1:-all}

build_java() {
    local stamp=java/target/.built
    if [ -f "$stamp" ] && [ -z "$(find java/pom.xml java/src -newer "$stamp" -print -quit)" ]; then
        return 0
    fi
    (cd java && mvn -q -B -Dstyle.color=never compile dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=target/lib)
    touch "$stamp"
}

build_go() {
    (cd go && go build -o e2e-client .)
}

check_python() {
    "${SLUICE_E2E_PYTHON:-python3}" -c 'import confluent_kafka, kafka, snappy, lz4, zstandard'
}

case "$what" in
    java) build_java ;;
    go) build_go ;;
    python) check_python ;;
    all) build_java; build_go; check_python ;;
    *) echo "usage: $0 [java|go|python|all]" >&2; exit 2 ;;
esac
