#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 300) on one core, with the
# seed corpus and the saved regressions; one line per target; fails if any
# target finds a crash, a timeout or an out-of-memory.
#   fuzz/run.sh [SECONDS] [TARGET...]     (make fuzz / make test-fuzz)
# CARGO_FUZZ: the cargo-fuzz binary (default: the one `make cargo-fuzz` installs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(manifest config args archive)
CARGO_FUZZ=${CARGO_FUZZ:-$ROOT/.tools/cargo-fuzz/bin/cargo-fuzz}
export PATH="$(dirname "$CARGO_FUZZ"):$PATH"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "NOTICE: no nightly Rust toolchain (rustup toolchain install nightly): fuzzing skipped"
    exit 0
fi

start=$(date +%s)
mkdir -p fuzz/target/logs
# Build once, all targets (cargo fuzz build with no name builds every one).
if ! cargo +nightly fuzz build --fuzz-dir fuzz >fuzz/target/logs/build.log 2>&1; then
    tail -30 fuzz/target/logs/build.log
    echo "fuzz: build FAILED (fuzz/target/logs/build.log)"
    exit 1
fi
echo "fuzz: built in $(( $(date +%s) - start )) s"

failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/target/corpus/$t" "fuzz/corpus/$t" "fuzz/regressions/$t"
    log="fuzz/target/logs/$t.log"
    # The first folder collects new inputs (not committed); seeds and
    # regressions are read (and replayed first).
    cargo +nightly fuzz run --fuzz-dir fuzz --jobs 1 "$t" \
        "fuzz/target/corpus/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    [ -z "$runs" ] && runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1)
    if [ $rc -eq 0 ]; then
        printf 'fuzz %-9s %10s runs in %ss: ok\n' "$t" "${runs:-?}" "$SECONDS_EACH"
    else
        failed=1
        what=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-zA-Z-]+|panicked at [^ ]+' "$log" | head -1)
        input=$(grep -oE '(Test unit written to|artifact_prefix.*; Test unit written to) [^ ]+' "$log" | awk '{print $NF}' | tail -1)
        printf 'fuzz %-9s %10s runs: FAILED (%s) input %s, log %s\n' "$t" "${runs:-?}" "${what:-exit $rc}" "${input:-?}" "$log"
    fi
done
exit $failed
