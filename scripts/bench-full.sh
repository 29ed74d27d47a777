#!/usr/bin/env bash
# The full-length benchmark runs behind docs/benchmarks.md's headline tables, one scenario after
# another (never two at once: on 2 cores they would measure each other).
#
#   scripts/bench-full.sh OUT_DIR [SCENARIO...]
#
# SCENARIO is fraud, throughput, partitions or replay (default: all four, in that order). Each
# writes OUT_DIR/<scenario>/ (report.md, report.json, plots, raw runs) and OUT_DIR/<scenario>.log
# (the harness's progress); the load average before and after each goes to OUT_DIR/load.txt.
# Builds the release binaries first. Tansu must be installed for its rows to have numbers:
#   cargo install tansu --locked --features dynostore --root target/tools
# A scenario whose report lists a failure (a target that did not start, lost records) exits
# non-zero; the script records that and goes on to the next one.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR [fraud|throughput|partitions|replay ...]" >&2
    exit 2
fi
out=$1
shift
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(fraud throughput partitions replay)
mkdir -p "$out"
cargo build --release --locked -p sluice-server -p sluice-loadgen -p sluice-bench || exit 1

# Replay leaves out the S3 Standard model: five 5 GB targets take over an hour on 2 cores.
targets_of() {
    case $1 in
        fraud) echo sluice,sluice-s3-express,sluice-s3-standard,kafka,tansu ;;
        replay) echo sluice,sluice-s3-express,kafka,tansu ;;
        *) echo sluice,kafka,tansu ;;
    esac
}

status=0
for scenario in "${scenarios[@]}"; do
    echo "$(date -u +%FT%TZ) $scenario start: load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
    ./target/release/sluice-bench --scenario "$scenario" --targets "$(targets_of "$scenario")" \
        --out "$out/$scenario" >"$out/$scenario.md" 2>"$out/$scenario.log"
    code=$?
    echo "$(date -u +%FT%TZ) $scenario end (exit $code): load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/load.txt"
    [ $code -eq 0 ] || status=1
done
cat "$out/load.txt"
exit $status
