#!/usr/bin/env bash
# Zero-shot evaluation of a Chinese-CLIP checkpoint on a MUGE-format split, in one command:
# converts the checkpoint to safetensors if it is a PyTorch file, encodes the split's images and
# queries (`shopclip encode`), ranks the pool for every query and, when the split has ground
# truth, scores the predictions with the official rules (`shopclip search --ref`).
#
# Usage: launch/zero_shot.sh VISION.json TEXT.json CHECKPOINT VOCAB.txt DATA_ROOT SPLIT OUT_DIR
#          [extra `shopclip encode` options, e.g. --context-length 52 --batch-size 32]
#   CHECKPOINT  Chinese-CLIP's .pt (needs python3-torch to convert) or a converted .safetensors
# Writes OUT_DIR/{image,text}_features.jsonl, OUT_DIR/predictions.jsonl and, with ground truth,
# OUT_DIR/scores.json (also printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 7 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
vision=$1 text=$2 checkpoint=$3 vocab=$4 data=$5 split=$6 out=$7
shift 7
shopclip=${SHOPCLIP:-$root/build/shopclip}
mkdir -p "$out"
case "$checkpoint" in
  *.safetensors) weights=$checkpoint ;;
  *) weights=$out/weights.safetensors
     /usr/bin/python3 "$root/launch/convert_chinese_clip.py" "$checkpoint" "$weights" ;;
esac
texts=$data/${split}_texts.jsonl
tianchi=()
if [ ! -f "$texts" ] && [ -f "$data/${split}_queries.jsonl" ]; then
  texts=$data/${split}_queries.jsonl
  tianchi=(--tianchi)
fi
"$shopclip" encode --vision-config "$vision" --text-config "$text" --checkpoint "$weights" \
  --vocab "$vocab" --images "$data/${split}_imgs.tsv" --texts "$texts" --out "$out" "$@"
# Ground truth is there when every query lists its images (a test split has empty lists).
if python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if rows and all(r.get("image_ids", r.get("item_ids")) for r in rows) else 1)' "$texts"; then
  "$shopclip" search --image-features "$out/image_features.jsonl" \
    --text-features "$out/text_features.jsonl" --out "$out/predictions.jsonl" --ref "$texts" \
    "${tianchi[@]}" | tee "$out/scores.json"
else
  "$shopclip" search --image-features "$out/image_features.jsonl" \
    --text-features "$out/text_features.jsonl" --out "$out/predictions.jsonl" "${tianchi[@]}"
fi
