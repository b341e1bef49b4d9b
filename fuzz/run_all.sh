#!/usr/bin/env bash
# Fuzzes every target for SECONDS seconds, JOBS targets at a time, from the
# saved corpus plus the seeds (fuzz/make_seeds.py), saving new inputs to
# fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/.
# Prints each target's executions (libFuzzer's final stats).
#
#   cargo +nightly fuzz build -s none      # once
#   fuzz/run_all.sh 180 2 [target...]      # from the repository root
set -euo pipefail
SECONDS_PER_TARGET=${1:-180}
JOBS=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
cd "$(dirname "$0")"
BIN=target/x86_64-unknown-linux-gnu/release
LOGS=${FUZZ_LOGS:-logs}
mkdir -p "$LOGS"
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//'); fi
run() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  local dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  "$BIN/$t" "${dirs[@]}" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" > "$LOGS/$t.log" 2>&1 || echo "$t: FAILED (see $LOGS/$t.log)"
  echo "$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$LOGS/$t.log" | awk '{print $2}') executions"
}
export -f run
export BIN LOGS SECONDS_PER_TARGET
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'run {}'
