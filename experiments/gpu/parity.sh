#!/usr/bin/env bash
# Chinese-CLIP features from `shopclip encode` against the plain-PyTorch reference model
# (tests/chinese_clip/check_features.py, tolerance 1e-4) on a small random ViT + BERT model: the
# parity check of tests/chinese_clip/encode_e2e.sh, cut to what a machine without our Debian
# packages can run (its python3 with torch, numpy and PIL; a dataset folder made elsewhere).
# Usage: experiments/gpu/parity.sh SHOPCLIP_BINARY DATASET_FOLDER
set -euo pipefail
shopclip=$1
data=$2
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-parity-XXXXXX")
python=${PYTHON:-python3}
cat > "$work/vision.json" <<'JSON'
{"embed_dim": 24, "image_resolution": 32, "vision_layers": 2, "vision_width": 128, "vision_patch_size": 8}
JSON
cat > "$work/text.json" <<'JSON'
{"vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
 "text_hidden_dropout_prob": 0.1, "text_hidden_size": 32, "text_initializer_range": 0.02,
 "text_intermediate_size": 64, "text_max_position_embeddings": 40, "text_num_attention_heads": 4,
 "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
JSON
vocab=$source_dir/configs/chinese_clip/vocab.txt
$python "$source_dir/tests/chinese_clip/make_case.py" "$work/vision.json" "$work/text.json" "$work/model" 5
$python "$source_dir/launch/convert_chinese_clip.py" "$work/model/checkpoint.pt" "$work/model.safetensors"
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --images "$data/valid_imgs.tsv" \
  --texts "$data/valid_texts.jsonl" --out "$work/features" --context-length 24 --batch-size 16
check() {
  $python "$source_dir/tests/chinese_clip/check_features.py" "$work/vision.json" "$work/text.json" "$@"
}
check "$work/model/checkpoint.pt" "$data/valid_imgs.tsv" "$work/features/image_features.jsonl"
check --vocab "$vocab" --context-length 24 "$work/model/checkpoint.pt" "$data/valid_texts.jsonl" \
  "$work/features/text_features.jsonl"
echo "parity: image and text features equal the PyTorch reference"
rm -rf "$work"
