#!/usr/bin/env bash
# Offline data preparation, stages 1-4 of the quickstart, for any source:
#   (synthetic data) -> verified notes -> ArrayRecord shards split by patient -> tokenizer.
# Each stage reuses its output when rerun with the same settings.
#
#   data_prep/prepare.sh --workdir W [--source synthetic|ham10000|manifest] [--data-root DIR]
#                        [--n 4000] [--styles template,report] [--num-shards 8] [--vocab-size 2000]
#
# Writes W/data (synthetic only), W/notes.jsonl, W/shards/ (with manifest.json, tokenizer.model).
# Expects dermjax installed (./launch/setup_venv.sh; source .venv/bin/activate).
set -euo pipefail

WORKDIR=""; SOURCE=synthetic; DATA_ROOT=""; N=4000; STYLES=template,report; SHARDS=8; VOCAB=2000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workdir) WORKDIR="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --data-root) DATA_ROOT="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --styles) STYLES="$2"; shift 2 ;;
    --num-shards) SHARDS="$2"; shift 2 ;;
    --vocab-size) VOCAB="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$WORKDIR" ]] || { echo "error: --workdir is required" >&2; exit 2; }
if [[ -n "$DATA_ROOT" && ! -e "$DATA_ROOT" ]]; then
  echo "error: --data-root $DATA_ROOT does not exist" >&2; exit 2
fi

step() { echo; echo "== $* =="; }
mkdir -p "$WORKDIR"
if [[ "$SOURCE" == synthetic ]]; then
  DATA_ROOT="${DATA_ROOT:-$WORKDIR/data}"
  step "1/6 synthetic data (SYNTHETIC, procedurally generated) -> $DATA_ROOT"
  dermjax-prep synthetic --out "$DATA_ROOT" --n "$N" --seed 0 --image-size 96
else
  [[ -n "$DATA_ROOT" ]] || { echo "error: --source $SOURCE needs --data-root" >&2; exit 2; }
  step "1/6 data: $SOURCE at $DATA_ROOT"
fi
step "2/6 notes (synthesized and verified)"
dermjax-prep notes --source "$SOURCE" --root "$DATA_ROOT" --out "$WORKDIR/notes.jsonl" --styles "$STYLES"
step "3/6 ArrayRecord shards (split by patient)"
dermjax-prep shards --source "$SOURCE" --root "$DATA_ROOT" --notes "$WORKDIR/notes.jsonl" \
  --out "$WORKDIR/shards" --num-shards "$SHARDS" --workers 2
step "4/6 SentencePiece tokenizer"
dermjax-prep tokenizer --shards "$WORKDIR/shards" --vocab-size "$VOCAB"
