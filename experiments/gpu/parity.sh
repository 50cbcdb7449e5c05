#!/usr/bin/env bash
# Chinese-CLIP features from `shopclip encode` against the plain-PyTorch reference model
# (tests/chinese_clip/check_features.py, tolerance 1e-4) on a small random ViT + BERT model: the
# parity check of tests/chinese_clip/encode_e2e.sh, cut to what a machine without our Debian
# packages can run (its python3 with torch, numpy and PIL; a dataset folder made elsewhere).
# With DEVICE cuda, shopclip encodes on GPU 0 (float32) and is held to the same tolerance.
# Usage: experiments/gpu/parity.sh SHOPCLIP_BINARY DATASET_FOLDER [DEVICE (cpu)]
set -euo pipefail
shopclip=$1
data=$2
device=${3:-cpu}
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-parity-XXXXXX")
python=${PYTHON:-python3}
cp "$source_dir/tests/fixtures/chinese_clip_tiny/vision.json" \
  "$source_dir/tests/fixtures/chinese_clip_tiny/text.json" "$work/"
vocab=$source_dir/configs/chinese_clip/vocab.txt
$python "$source_dir/tests/chinese_clip/make_case.py" "$work/vision.json" "$work/text.json" "$work/model" 5
$python "$source_dir/launch/convert_chinese_clip.py" "$work/model/checkpoint.pt" "$work/model.safetensors"
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --images "$data/valid_imgs.tsv" \
  --texts "$data/valid_texts.jsonl" --out "$work/features" --context-length 24 --batch-size 16 \
  --device "$device"
check() {
  $python "$source_dir/tests/chinese_clip/check_features.py" "$work/vision.json" "$work/text.json" "$@"
}
check "$work/model/checkpoint.pt" "$data/valid_imgs.tsv" "$work/features/image_features.jsonl"
check --vocab "$vocab" --context-length 24 "$work/model/checkpoint.pt" "$data/valid_texts.jsonl" \
  "$work/features/text_features.jsonl"
echo "parity ($device): image and text features equal the PyTorch reference"
rm -rf "$work"
