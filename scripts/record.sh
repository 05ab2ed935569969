#!/usr/bin/env bash
# Remakes every recorded result from the commands that define it, then the README's "Measured"
# section from those records (`fastlmpi report`).
#
#   scripts/record.sh            full set into results/recorded/ (hours on 2 cores) + README.md
#   scripts/record.sh --quick    cheap subset into results/quick/ (minutes) + results/quick/MEASURED.md
#   scripts/record.sh --note "shared machine, 5 other builds running"   recorded in every file
#   scripts/record.sh --only run-minilm-l6-ot-iknp,ot-bench   only the named records (then the report)
#
# Every JSON record carries its provenance (commit, command line, build, cores, memory, date);
# each command's console output is kept beside it as NAME.txt. Sentence texts are stripped from
# the eval records (the data set is not committed; index and origin identify each sentence).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
only=""
note="${FASTLMPI_MACHINE_NOTE:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --note) note="${2:?--note needs a text}"; shift ;;
    --only) only="${2:?--only needs record names, e.g. ot-bench,run-mpnet-base-128}"; shift ;;
    *) echo "usage: scripts/record.sh [--quick] [--note TEXT] [--only NAME,...]" >&2; exit 2 ;;
  esac
  shift
done

# The passage `bench --compare` uses (every one of 128 positions a real token).
PASSAGE="The committee postponed its decision until further evidence could be gathered and reviewed. \
Members of the public who attended the hearing were told that the new report, commissioned last spring from an \
independent panel of engineers, economists and environmental scientists, would not be ready before the end of the \
year. Several speakers argued that the delay would raise the cost of the bridge, while others welcomed the chance \
to study the alternatives more carefully, including a tunnel under the river, an expanded ferry service and a \
smaller crossing further upstream. The chair promised that every written submission would be published online, \
that the panel would hold two more open meetings in the spring, and that the final vote would take place only \
after the council had debated the report in full session."

echo "== building (release)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/fastlmpi"

commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then commit="$commit-dirty"; fi
export FASTLMPI_COMMIT="$commit" FASTLMPI_MACHINE_NOTE="$note"

if [ "$quick" = 1 ]; then out=results/quick; else out=results/recorded; fi
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
started=$(date +%s)

# wanted NAME: whether --only (if given) names this record.
wanted() {
  [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]
}

# step NAME CMD...: run CMD with its results going to a scratch folder, console to $out/NAME.txt.
# Returns 1 (without running) when --only leaves NAME out, so callers chain `step … && keep …`.
step() {
  local name=$1; shift
  wanted "$name" || return 1
  local t0; t0=$(date +%s)
  echo "== $name: fastlmpi $*"
  rm -rf "${scratch:?}"/*
  { echo "\$ fastlmpi $*"; echo "# commit $commit · $(nproc) cores · $(date -u +%Y-%m-%dT%H:%M:%SZ)${note:+ · $note}"; } > "$out/$name.txt"
  FASTLMPI_RESULTS_DIR="$scratch" "$bin" "$@" >> "$out/$name.txt" 2>&1 || { echo "error: $name failed; see $out/$name.txt" >&2; tail -5 "$out/$name.txt" >&2; exit 1; }
  echo "   done in $(( $(date +%s) - t0 )) s"
}

# keep PATTERN NAME EXT...: move the newest scratch file matching PATTERN.EXT to $out/NAME.EXT.
keep() {
  local pattern=$1 name=$2; shift 2
  for ext in "$@"; do
    local f; f=$(ls -t "$scratch"/$pattern.$ext 2>/dev/null | head -1)
    [ -n "$f" ] || { echo "error: no $pattern.$ext from step $name" >&2; exit 1; }
    mv "$f" "$out/$name.$ext"
  done
}

# Eval records without the sentence texts.
strip_texts() {
  python3 - "$1" <<'EOF'
import json, sys
path = sys.argv[1]
d = json.load(open(path))
for r in d.get("records", []):
    r.pop("text", None)
d["note"] = "sentence texts removed (the data set is not committed): index and origin identify each sentence in data/uci after scripts/fetch-data.sh"
json.dump(d, open(path, "w"), indent=2)
open(path, "a").write("\n")
EOF
}

eval_step() {
  local name=$1; shift
  step "$name" eval "$@" --output "$scratch/eval.json" || return 0
  mv "$scratch/eval.json" "$out/$name.json"
  strip_texts "$out/$name.json"
}

bench_suite() {
  local suite=$1; shift
  step "$suite-bench" bench --suite "$suite" "$@" && keep "$suite-bench" "$suite-bench" json
  return 0
}

# Sentiment heads for the evals (with --only, records that need a missing head fail with its name).
if [ -z "$only" ]; then
  for m in minilm-l6 $([ "$quick" = 1 ] || echo mpnet-base); do
    [ -f "models/$m/head.safetensors" ] || "$bin" train-head --model "$m" --data uci
  done
fi

if [ "$quick" = 1 ]; then
  step run-minilm-l6-1layer run --model minilm-l6 --layers 1 --input "The new movie is awesome" \
    && keep 'run-minilm-l6-fastlmpi-*' run-minilm-l6-1layer json svg
  for net in local lan; do
    step "compare-bolt-minilm-l6-$net" bench --compare bolt --model minilm-l6 --seq-len 16 --layers 1 --net "$net" \
      && keep 'bench-*' "compare-bolt-minilm-l6-$net" json svg
  done
  eval_step eval-minilm-l6-private --model minilm-l6 --data uci --split test --limit 3 --private --weight-cache-mib 0
  eval_step eval-minilm-l6-plain --model minilm-l6 --data uci --split test --limit 200
  bench_suite ot --sizes 65536
  bench_suite toolkit --sizes 65536
  "$bin" report --quick --out "$out/MEASURED.md"
else
  step run-mpnet-base-128 run --model mpnet-base --seq-len 128 --max-len 128 --truncate --input "$PASSAGE" \
    && keep 'run-mpnet-base-fastlmpi-*' run-mpnet-base-128 json svg
  for net in local lan; do
    step "compare-bolt-mpnet-base-128-$net" bench --compare bolt --model mpnet-base --seq-len 128 --layers 2 --net "$net" \
      && keep 'bench-*' "compare-bolt-mpnet-base-128-$net" json svg
  done
  # The same private inference on each OT backend (the silent backend's end-to-end effect).
  for ot in iknp silent; do
    # MiniLM with the weight cache warm (≈ 1.7 GiB at 7 tokens): the online time of a running server.
    step "run-minilm-l6-ot-$ot" run --model minilm-l6 --input "The new movie is awesome" --ot "$ot" --weight-cache-mib 4096 --json \
      && keep 'run-minilm-l6-fastlmpi-*' "run-minilm-l6-ot-$ot" json svg
    step "run-mpnet-base-128-2layers-ot-$ot" run --model mpnet-base --max-len 128 --truncate --seq-len 128 --layers 2 \
        --input "$PASSAGE" --ot "$ot" --json \
      && keep 'run-mpnet-base-fastlmpi-*' "run-mpnet-base-128-2layers-ot-$ot" json svg
  done
  eval_step eval-minilm-l6-private-200 --model minilm-l6 --data uci --split test --limit 200 --private --weight-cache-mib 17000
  eval_step eval-minilm-l6-plain --model minilm-l6 --data uci --split test
  eval_step eval-mpnet-base-plain --model mpnet-base --data uci --split test
  bench_suite ot
  bench_suite toolkit
  bench_suite linear
  "$bin" report
fi
echo "== recorded into $out/ in $(( $(date +%s) - started )) s"
