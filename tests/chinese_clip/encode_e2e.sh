#!/usr/bin/env bash
# Chinese-CLIP import end to end, with the real binary and the real 21128-token vocabulary:
# a small model in Chinese-CLIP's checkpoint layout (made by the PyTorch reference) is converted,
# `shopclip encode` writes feature files for the tiny dataset's valid split, and the image
# features equal those of the reference with Chinese-CLIP's own preprocessing (Pillow decode,
# RGB, bicubic resize, CLIP normalisation) within 1e-4, and so do the text features (queries
# tokenized by tests/chinese_clip/bert_tokenizer.py, a Python BERT tokenizer written apart from the C++
# one, then the reference BERT), raw and --normalize'd, for the valid queries and for ~400
# queries that exercise every tokenizer rule. The checker rejects a perturbed value, swapped ids,
# a missing or repeated row, rows out of order, a NaN, another model's features, the wrong
# context length or normalisation, and a missing file. `search` scores the features, and
# tests/tools/muge_score.py (an independent scorer) agrees with its scores; launch/zero_shot.sh
# does it all in one command; `shopclip train` fine-tunes the imported model with the image tower
# frozen (whose features then still equal the reference's) and gradient checkpointing on; a .pt
# given to encode is refused with the way to convert it.
# Usage: encode_e2e.sh SHOPCLIP_BINARY SOURCE_DIR       (needs python3-torch and python3-pil)
# Without them it is skipped (exit 77), except with CI=true, where that is a failure (exit 1).
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-cnclip-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "CHINESE-CLIP E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3
source "$source_dir/tests/skip_or_fail.sh"
if ! $python -c 'import numpy, torch, PIL' 2>/dev/null; then
  skip_or_fail "needs $python with torch, numpy and PIL (python3-torch, python3-pil; launch/setup.sh installs them)"
fi
export PYTHONDONTWRITEBYTECODE=1

data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 >/dev/null 2>&1
# A small random ViT + BERT (tests/fixtures/chinese_clip_tiny/, shared with experiments/gpu/).
cp "$source_dir/tests/fixtures/chinese_clip_tiny/vision.json" \
  "$source_dir/tests/fixtures/chinese_clip_tiny/text.json" "$work/"
vocab=$source_dir/configs/chinese_clip/vocab.txt
$python "$source_dir/tests/chinese_clip/make_case.py" "$work/vision.json" "$work/text.json" "$work/model" 5
$python "$source_dir/launch/convert_chinese_clip.py" "$work/model/checkpoint.pt" "$work/model.safetensors"
checkpoint=$work/model/checkpoint.pt

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

# check_features KIND CHECKPOINT INPUTS FEATURES... [ARGS...]: tests/chinese_clip/check_features.py for
# image (INPUTS a TSV) or text features (INPUTS a queries JSONL, tokenized to 24 as encoded here).
check_features() {
  local kind=$1
  shift
  local text_args=()
  [ "$kind" = image ] || text_args=(--vocab "$vocab" --context-length 24)
  # Before the caller's arguments, so that a --context-length there overrides 24.
  $python "$source_dir/tests/chinese_clip/check_features.py" "$work/vision.json" "$work/text.json" \
    "${text_args[@]}" "$@"
}
# rejecting WHAT ARGS...: runs check_features ARGS..., which must exit non-zero; then
# rejected FILE PATTERN WHAT: its log says FILE fails, with a reason that contains PATTERN (so the
# rejection is the checker's verdict on that file, not a crash).
rejecting() {
  local what=$1
  shift
  if check_features "$@" > "$work/reject.log" 2>&1; then
    cat "$work/reject.log" >&2
    fail "the checker accepted $what"
  fi
}
rejected() {
  local file=$1 pattern=$2 what=$3 line
  line=$(grep -F -- "FAIL $file: " "$work/reject.log" | grep -m 1 -F -- "$pattern") || {
    cat "$work/reject.log" >&2
    fail "the checker did not reject $what, saying '$pattern'"
  }
  echo "rejected $what: ${line#FAIL "$file": }"
}

if ! "$shopclip" version | grep -q '"libtorch_with_cuda": true'; then
  echo "== --device cuda without a CUDA LibTorch is refused by name"
  if "$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
    --checkpoint "$work/model.safetensors" --vocab "$vocab" --texts "$data/valid_texts.jsonl" \
    --out "$work/cuda-features" --context-length 24 --device cuda 2> "$work/cuda.log"; then
    fail "encode --device cuda ran without CUDA"
  fi
  grep -q "this LibTorch has no CUDA" "$work/cuda.log" || { cat "$work/cuda.log"; fail "no reason given"; }
fi

echo "== image features equal the reference with Chinese-CLIP's preprocessing"
check_features image "$checkpoint" "$data/valid_imgs.tsv" "$features/image_features.jsonl" \
  || fail "image features differ from the reference"

echo "== text features equal the reference: Python BERT tokenizer, then the reference BERT"
check_features text "$checkpoint" "$data/valid_texts.jsonl" "$features/text_features.jsonl" \
  || fail "text features differ from the reference"
# The valid queries are lower-case Chinese, digits and "ins"; these exercise every tokenizer rule
# (upper case, accents, full width, punctuation, controls, odd spaces, emoji, WordPiece splits,
# [UNK], truncation, the 100-character word limit): the golden fixture's queries, not its tokens.
$python "$source_dir/tests/chinese_clip/hard_queries.py" "$source_dir/tests/fixtures/tokenizer_golden.tsv" \
  "$work/hard_texts.jsonl"
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --texts "$work/hard_texts.jsonl" \
  --out "$work/hard" --context-length 24 --batch-size 64 --normalize
check_features text "$checkpoint" "$work/hard_texts.jsonl" "$work/hard/text_features.jsonl" \
  --normalize || fail "the hard queries' text features differ from the reference"

echo "== the checker rejects wrong features"
for kind in image text; do
  inputs=$data/valid_imgs.tsv
  [ $kind = image ] || inputs=$data/valid_texts.jsonl
  bad=$work/bad_$kind
  $python "$source_dir/tests/chinese_clip/corrupt_features.py" "$features/${kind}_features.jsonl" "$bad"
  rejecting "wrong $kind features" $kind "$checkpoint" "$inputs" "$bad"/*.jsonl "$bad/none.jsonl"
  grep -q -x -F "ok $bad/copy.jsonl" "$work/reject.log" \
    || { cat "$work/reject.log" >&2; fail "the checker rejected an exact rewrite of the $kind features"; }
  rejected "$bad/none.jsonl" "cannot read it" "a missing $kind feature file"
  rejected "$bad/perturb.jsonl" "differ from the reference by 0.001" \
    "$kind features with one value moved by 1e-3"
  rejected "$bad/swap-ids.jsonl" "differ from the reference" "$kind features with two rows' ids swapped"
  rejected "$bad/drop-row.jsonl" " 1 missing" "$kind features lacking a row"
  rejected "$bad/duplicate-row.jsonl" " 1 repeated" "$kind features with a row twice"
  rejected "$bad/reorder.jsonl" "not in input order" "$kind features out of input order"
  rejected "$bad/nan.jsonl" "not finite" "$kind features with a NaN"
done
# Another model (seed 6, not 5), encoded by shopclip: right format, right ids, wrong features.
$python "$source_dir/tests/chinese_clip/make_case.py" "$work/vision.json" "$work/text.json" "$work/other" 6
$python "$source_dir/launch/convert_chinese_clip.py" "$work/other/checkpoint.pt" \
  "$work/other.safetensors" > /dev/null
other=$work/other_features
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/other.safetensors" --vocab "$vocab" --images "$data/valid_imgs.tsv" \
  --texts "$data/valid_texts.jsonl" --out "$other" --context-length 24 2> /dev/null
check_features text "$work/other/checkpoint.pt" "$data/valid_texts.jsonl" "$other/text_features.jsonl" \
  > /dev/null || fail "the seed-6 model's text features differ from its own reference"
rejecting "another model's image features" \
  image "$checkpoint" "$data/valid_imgs.tsv" "$other/image_features.jsonl"
rejected "$other/image_features.jsonl" "differ from the reference" "another model's image features"
rejecting "another model's text features" \
  text "$checkpoint" "$data/valid_texts.jsonl" "$other/text_features.jsonl"
rejected "$other/text_features.jsonl" "differ from the reference" "another model's text features"
# The tokenization and the normalisation are part of what is checked.
rejecting "text features tokenized to 24 checked as tokenized to 16" \
  text "$checkpoint" "$work/hard_texts.jsonl" "$work/hard/text_features.jsonl" --normalize \
  --context-length 16
rejected "$work/hard/text_features.jsonl" "differ from the reference" \
  "text features tokenized to 24 checked as tokenized to 16"
rejecting "normalised text features checked as raw ones" \
  text "$checkpoint" "$work/hard_texts.jsonl" "$work/hard/text_features.jsonl"
rejected "$work/hard/text_features.jsonl" "differ from the reference" \
  "normalised text features checked as raw ones"

echo "== search scores them"
"$shopclip" search --image-features "$features/image_features.jsonl" \
  --text-features "$features/text_features.jsonl" --out "$work/pred.jsonl" \
  --ref "$data/valid_texts.jsonl" > "$work/scores.json"
grep -q '"success":true' "$work/scores.json" || fail "search did not score"
"$shopclip" score --ref "$data/valid_texts.jsonl" --pred "$work/pred.jsonl" > "$work/score2.json"
cmp "$work/scores.json" "$work/score2.json" || fail "search and score disagree"
# An independent scorer (written from the MUGE rules, no code shared with shopclip) gives the
# same scores, and notices a wrong one.
scorer=$source_dir/tests/tools/muge_score.py
$python "$scorer" --ref "$data/valid_texts.jsonl" --pred "$work/pred.jsonl" \
  --expect "$work/scores.json" || fail "tests/tools/muge_score.py scores the predictions differently"
$python - "$work/scores.json" "$work/wrong_scores.json" <<'PY'
import json, sys
scores = json.load(open(sys.argv[1]))
scores["scoreJson"]["r1"] += 2.5
json.dump(scores, open(sys.argv[2], "w"))
PY
if $python "$scorer" --ref "$data/valid_texts.jsonl" --pred "$work/pred.jsonl" \
     --expect "$work/wrong_scores.json" > /dev/null 2>&1; then
  fail "tests/tools/muge_score.py accepted a wrong R@1"
fi

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
check_features image "$checkpoint" "$data/valid_imgs.tsv" "$work/tuned/image_features.jsonl" \
  --normalize || fail "the frozen image tower changed"
# The text tower did train: its features moved away from the pretrained ones.
"$shopclip" encode --run "$run" --checkpoint "$run/checkpoints/last.pt" \
  --texts "$data/valid_texts.jsonl" --out "$work/tuned"
"$shopclip" encode --vision-config "$work/vision.json" --text-config "$work/text.json" \
  --checkpoint "$work/model.safetensors" --vocab "$vocab" --texts "$data/valid_texts.jsonl" \
  --out "$work/pretrained" --context-length 24 --normalize
check_features text "$checkpoint" "$data/valid_texts.jsonl" "$work/pretrained/text_features.jsonl" \
  --normalize || fail "normalised text features differ from the reference"
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
