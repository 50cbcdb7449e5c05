#!/usr/bin/env bash
# Chinese-CLIP import end to end, with the real binary and the real 21128-token vocabulary:
# a small model in Chinese-CLIP's checkpoint layout (made by the PyTorch reference) is converted,
# `shopclip encode` writes feature files for the tiny dataset's valid split, and the image
# features equal those of the reference with Chinese-CLIP's own preprocessing (Pillow decode,
# RGB, bicubic resize, CLIP normalisation) within 1e-4; `search` scores them; launch/zero_shot.sh
# does it all in one command; `shopclip train` fine-tunes the imported model with the image tower
# frozen (whose features then still equal the reference's) and gradient checkpointing on; a .pt
# given to encode is refused with the way to convert it.
# Usage: encode_e2e.sh SHOPCLIP_BINARY SOURCE_DIR       (needs python3-torch and python3-pil)
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-cnclip-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "CHINESE-CLIP E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3
if ! $python -c 'import torch, PIL' 2>/dev/null; then
  echo "skipped: needs python3-torch and python3-pil (launch/setup.sh installs them)" >&2
  exit 77
fi
export PYTHONDONTWRITEBYTECODE=1

data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 >/dev/null 2>&1
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
$python "$source_dir/tests/cnclip/make_case.py" "$work/vision.json" "$work/text.json" "$work/model" 5
$python "$source_dir/launch/convert_chinese_clip.py" "$work/model/checkpoint.pt" "$work/model.safetensors"

echo "== encode"
features=$work/features
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --images "$data/valid_imgs.tsv" \
  --texts "$data/valid_texts.jsonl" --out "$features" --context-length 24 --batch-size 16
[ "$(wc -l < "$features/image_features.jsonl")" -eq 121 ] || fail "expected 121 image features"
[ "$(wc -l < "$features/text_features.jsonl")" -eq 40 ] || fail "expected 40 text features"
head -n 1 "$features/image_features.jsonl" | grep -q '^{"image_id":[0-9]*,"feature":\[' \
  || fail "image features are not in Chinese-CLIP's format"
head -n 1 "$features/text_features.jsonl" | grep -q '^{"text_id":[0-9]*,"feature":\[' \
  || fail "text features are not in Chinese-CLIP's format"

echo "== image features equal the reference with Chinese-CLIP's preprocessing"
$python "$source_dir/tests/cnclip/check_features.py" "$work/vision.json" "$work/text.json" \
  "$work/model/checkpoint.pt" "$data/valid_imgs.tsv" "$features/image_image_features.jsonl" \
  2>/dev/null && fail "the checker accepted a missing file"
$python "$source_dir/tests/cnclip/check_features.py" "$work/vision.json" "$work/text.json" \
  "$work/model/checkpoint.pt" "$data/valid_imgs.tsv" "$features/image_features.jsonl" \
  || fail "image features differ from the reference"

echo "== search scores them"
"$shopclip" search --image-features "$features/image_features.jsonl" \
  --text-features "$features/text_features.jsonl" --out "$work/pred.jsonl" \
  --ref "$data/valid_texts.jsonl" > "$work/scores.json"
grep -q '"success":true' "$work/scores.json" || fail "search did not score"
"$shopclip" score --ref "$data/valid_texts.jsonl" --pred "$work/pred.jsonl" > "$work/score2.json"
cmp "$work/scores.json" "$work/score2.json" || fail "search and score disagree"

echo "== zero-shot in one command, straight from the .pt"
SHOPCLIP=$shopclip bash "$source_dir/launch/zero_shot.sh" "$work/vision.json" "$work/text.json" \
  "$work/model/checkpoint.pt" "$vocab" "$data" valid "$work/zero" --context-length 24
cmp "$work/zero/scores.json" "$work/scores.json" || fail "zero_shot.sh scored differently"
SHOPCLIP=$shopclip bash "$source_dir/launch/zero_shot.sh" "$work/vision.json" "$work/text.json" \
  "$work/model.safetensors" "$vocab" "$data" test "$work/zero_test" --context-length 24
[ "$(wc -l < "$work/zero_test/predictions.jsonl")" -eq 40 ] || fail "no test submission"
[ ! -e "$work/zero_test/scores.json" ] || fail "the test split has no ground truth to score"

echo "== fine-tuning the imported model with shopclip train, image tower frozen"
run=$work/finetune
"$shopclip" prep --config "$source_dir/configs/tiny.yaml" --set "data.root=$data" >/dev/null 2>&1
finetune=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data" --set "run.dir=$run"
  --set model.embed_dim=24 --set model.text.context_length=24 --set "model.text.vocab=$vocab"
  --set "model.chinese_clip.vision_config=$work/vision.json"
  --set "model.chinese_clip.text_config=$work/text.json"
  --set "model.chinese_clip.weights=$work/model.safetensors"
  --set model.chinese_clip.grad_checkpointing=true --set train.freeze=image
  --set train.epochs=1 --set train.lr=1e-4)
"$shopclip" train "${finetune[@]}" 2>&1 | tail -n 2
grep -q "Chinese-CLIP weights from" "$run/log.txt" || fail "the pretrained weights were not loaded"
[ -s "$run/eval/valid.json" ] || fail "the fine-tuned model was not evaluated"
# The frozen image tower still computes the pretrained model's features (unit-norm here).
"$shopclip" encode --run "$run" --checkpoint "$run/checkpoints/last.pt" \
  --images "$data/valid_imgs.tsv" --out "$work/tuned"
$python "$source_dir/tests/cnclip/check_features.py" "$work/vision.json" "$work/text.json" \
  "$work/model/checkpoint.pt" "$data/valid_imgs.tsv" "$work/tuned/image_features.jsonl" --normalize \
  || fail "the frozen image tower changed"
# The text tower did train: its features moved away from the pretrained ones.
"$shopclip" encode --run "$run" --checkpoint "$run/checkpoints/last.pt" \
  --texts "$data/valid_texts.jsonl" --out "$work/tuned"
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --texts "$data/valid_texts.jsonl" \
  --out "$work/pretrained" --context-length 24 --normalize
$python - "$work/tuned/text_features.jsonl" "$work/pretrained/text_features.jsonl" <<'PY' \
  || fail "the text tower did not train"
import json, sys
a, b = ([json.loads(l)["feature"] for l in open(p)] for p in sys.argv[1:])
moved = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
print(f"text features moved by up to {moved:.3g}")
sys.exit(0 if moved > 1e-3 else 1)
PY

echo "== a PyTorch checkpoint given to encode is refused with the conversion command"
if "$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
     --checkpoint "$work/model/checkpoint.pt" --vocab "$vocab" --texts "$data/valid_texts.jsonl" \
     --out "$work/x" --context-length 24 2>"$work/pt.log"; then
  fail "encode accepted a .pt"
fi
grep -q "convert_chinese_clip.py" "$work/pt.log" || fail "no conversion hint"
echo "CHINESE-CLIP E2E OK"
