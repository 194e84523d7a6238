#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one at a time, from the seed
# corpus in seeds/<target> plus a working corpus kept outside the clone. Fails on the first
# target that crashes; the crashing input is in $SPROUT_FUZZ_DIR/artifacts/<target>/.
#
#   crates/sprout-fuzz/run.sh 60                 # all targets, a minute each
#   crates/sprout-fuzz/run.sh 3600 http_differential
#
# Needs cargo-fuzz and a nightly toolchain (or a stable one with RUSTC_BOOTSTRAP=1 and
# SPROUT_FUZZ_SANITIZER=none).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(http_differential http_request http_response chunked sigv4 sqs_body manifest bundle_tar bundle_zip)
fi
toolchain="${SPROUT_FUZZ_TOOLCHAIN-+nightly}"
sanitizer="${SPROUT_FUZZ_SANITIZER:-address}"
target_dir="${SPROUT_FUZZ_TARGET_DIR:-/var/tmp/sprout-fuzz-target}"
work="${SPROUT_FUZZ_DIR:-/var/tmp/sprout-fuzz}"

cargo $toolchain fuzz build --fuzz-dir . --target-dir "$target_dir" -s "$sanitizer"
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    printf '[%s] fuzzing %s for %s s\n' "$(date -u +%H:%M:%S)" "$t" "$seconds"
    log="$work/$t.log"
    # -rss_limit_mb: the bundle targets unpack real files; 2 GiB is plenty.
    status=0
    cargo $toolchain fuzz run --fuzz-dir . --target-dir "$target_dir" -s "$sanitizer" "$t" \
        "$work/corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::average_exec_per_sec|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        # The stack trace above can push the assertion's own message out of the tail.
        grep -m 1 -A 4 "panicked at" "$log" >&2 || true
        printf 'fuzz target %s failed; the input is in %s\n' "$t" "$work/artifacts/$t/" >&2
        exit 1
    fi
done
