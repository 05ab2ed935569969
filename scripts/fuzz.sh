#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60) and record executions and coverage in
# results/fuzz-<target>.json (results/fuzz-smoke-<target>.json with --smoke: the CI run).
#
#   scripts/fuzz.sh [--smoke] [--runs N] [SECONDS] [TARGET...]
#
# --runs N stops each target after N executions (SECONDS is then the upper bound): on a busy
# machine a time budget alone gives fewer executions.
#
# Needs the nightly toolchain; installs cargo-fuzz from crates.io when it is missing. A crash
# stops the script with a non-zero status; its input is under fuzz/artifacts/<target>/ (add
# it to the regression corpus, fuzz/regressions/<target>/, once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="fuzz"
runs=()
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --smoke) prefix="fuzz-smoke"; shift ;;
    --runs) runs=(-runs="${2:?--runs needs a count}"); shift 2 ;;
    *) echo "usage: scripts/fuzz.sh [--smoke] [--runs N] [SECONDS] [TARGET...]" >&2; exit 2 ;;
  esac
done
seconds="${1:-60}"
shift || true

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

mkdir -p results fuzz/artifacts
echo "== building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build --fuzz-dir fuzz -O
for t in "${targets[@]}"; do
  # The committed seeds (real recorded messages) and the regressions, copied into a working
  # corpus so the committed directories only change on purpose.
  work="fuzz/corpus-work/$t"
  mkdir -p "$work"
  for d in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
    [[ -d "$d" ]] && cp -n "$d"/* "$work"/ 2>/dev/null || true
  done
  log="fuzz/artifacts/$t.log"
  echo "== $t: ${seconds} s"
  set +e
  cargo +nightly fuzz run --fuzz-dir fuzz -O "$t" "$work" -- \
    -max_total_time="$seconds" "${runs[@]}" -rss_limit_mb=3072 -malloc_limit_mb=1400 -timeout=20 \
    -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  execs=$(grep -h '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2 + 0}')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2 + 0}')
  corpus=$(find "$work" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
  cat >"results/$prefix-$t.json" <<JSON
{
  "target": "$t",
  "seconds": $seconds,
  "executions": ${execs:-0},
  "coverage_edges": ${cov:-0},
  "features": ${ft:-0},
  "corpus_files": $corpus,
  "crashes": $crashes,
  "exit_status": $status,
  "command": "scripts/fuzz.sh $([[ $prefix == fuzz-smoke ]] && echo '--smoke ')${runs[*]:+--runs ${runs[0]#-runs=} }$seconds $t",
  "machine": "$(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)${FASTLMPI_MACHINE_NOTE:+, $FASTLMPI_MACHINE_NOTE}",
  "date_utc": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
}
JSON
  echo "   executions ${execs:-0}, coverage ${cov:-0} edges, crashes $crashes (log: $log)"
  if [[ $status -ne 0 ]]; then
    echo "error: fuzz target $t failed (status $status); see $log and fuzz/artifacts/$t/" >&2
    exit "$status"
  fi
done
