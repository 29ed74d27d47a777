#!/usr/bin/env bash
# Copies Apache Kafka (kafka_2.13, version in pom.xml) and its runtime dependencies from Maven Central
# into scripts/kafka/lib. Idempotent: a second run with lib/ complete returns at once.
set -euo pipefail
cd "$(dirname "$0")"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' pom.xml)
if [ -f "lib/kafka_2.13-${version}.jar" ] && [ -f lib/.complete ] && [ lib/.complete -nt pom.xml ]; then
    exit 0
fi
command -v mvn >/dev/null || { echo "fetch-kafka: mvn not found (apt-get install maven)" >&2; exit 1; }
rm -rf lib.partial
mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib.partial
rm -rf lib
mv lib.partial lib
touch lib/.complete
