#!/usr/bin/env bash
# Builds every fuzz target (cargo-fuzz, nightly, AddressSanitizer) and runs each for a fixed time,
# starting from its committed seeds (docs/testing.md, "Fuzzing"). CI runs it from `.ci/run`.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 45) each
#   scripts/fuzz.sh 600 kafka_request    one target, 10 minutes
#
# Installs what it needs when missing: the nightly toolchain (rustup) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`), so a fresh machine needs nothing by hand.
#
# One crate, fuzz/, holds every target; it builds into FUZZ_TARGET_DIR (default target/fuzz), apart
# from the stable builds. Each target's corpus grows in fuzz/corpus/TARGET (ignored by git); the
# seeds in fuzz/seeds/TARGET are read, never written. A crash, a failed check, a timeout
# (FUZZ_INPUT_TIMEOUT_S per input) or a leak fails the run: the input is kept in
# fuzz/artifacts/TARGET/ and its path and the command that replays it are printed. Every target
# runs even after one fails; the exit status is non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=${1:-${FUZZ_SECONDS:-45}}
shift $(( $# > 0 ? 1 : 0 ))
input_timeout_s=${FUZZ_INPUT_TIMEOUT_S:-10}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/target/fuzz}

all_targets="kafka_request record_batch decode_object object_index log_entry commands checkpoint config"
targets=${*:-${FUZZ_TARGETS:-$all_targets}}
for target in $targets; do
    [ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "fuzz: unknown target $target (known: $all_targets)" >&2; exit 2; }
done

if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi
cargo +nightly --version
cargo fuzz --version

build_start=$SECONDS
(cd fuzz && cargo +nightly fuzz build --target-dir "$CARGO_TARGET_DIR") || {
    echo "fuzz: the build failed" >&2
    exit 1
}
echo "fuzz: built in $((SECONDS - build_start)) s"

failed=()
summary=()
for target in $targets; do
    dir=fuzz
    corpus="$dir/corpus/$target"
    seeds="$dir/seeds/$target"
    artifacts="$dir/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    log="$CARGO_TARGET_DIR/fuzz-$target.log"
    start=$SECONDS
    echo "fuzz: $target for $seconds s (corpus $corpus, seeds $seeds)"
    (cd "$dir" && cargo +nightly fuzz run --target-dir "$CARGO_TARGET_DIR" "$target" \
        "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout="$input_timeout_s" -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/") > "$log" 2>&1
    status=$?
    # libFuzzer's last status line: "#RUNS DONE cov: N ft: N corp: N/SIZE exec/s: N rss: N".
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse)' "$log" | tail -n 1)
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    cov=$(echo "$done_line" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
    features=$(echo "$done_line" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+')
    line=$(printf '%-15s %4d s  %10s runs  %7s exec/s  cov %6s  ft %6s' "$target" \
        "$((SECONDS - start))" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${features:-?}")
    if [ "$status" -eq 0 ]; then
        summary+=("$line  ok")
        echo "fuzz: $line"
    else
        summary+=("$line  FAILED")
        failed+=("$target")
        echo "fuzz: $target FAILED (exit $status); the end of its log ($log):" >&2
        tail -n 60 "$log" >&2
        for artifact in $(grep -oE "artifacts/$target/[a-z-]+[0-9a-f]+" "$log" | sort -u); do
            echo "fuzz: failing input kept at $root/$dir/$artifact" >&2
            echo "fuzz: replay it with: (cd $dir && cargo +nightly fuzz run $target $artifact)" >&2
        done
    fi
done

echo "fuzz: summary ($seconds s per target)"
printf 'fuzz:   %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
