#!/usr/bin/env bash
# Issue 14's figures on the demo dataset: three bench_small runs (seeds 1, 2, 3) and one ViT run,
# each trained for MINUTES (default 8), then every fusion method over the four (weights tuned on
# valid, scored on test), soups of the three seeds, QB-Norm on the best single run (beta tuned on
# valid), dual softmax (transductive, for reference) and the learned reranker on the best single
# run (experiments/rerank_demo.sh), each compared on test with the best single run by
# `shopclip compare` (paired bootstrap). The record is written by
# experiments/ensemble_record.py to experiments/results/ensemble-<time>.md.
# Usage: experiments/ensemble_demo.sh [MINUTES] [RUNS_DIR] [RERANK_MINUTES]
#   (after bash launch/demo.sh made datasets/demo; RUNS_DIR with cnn-s1..3 and vit reuses them)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-8}
stamp=$(date +%Y%m%d-%H%M%S)
dir=${2:-ensembles/demo-$stamp}
rerank_minutes=${3:-12}
shopclip=build/shopclip
answers=datasets/demo/answers/test_texts.jsonl
mkdir -p "$dir"
log=$dir/experiment.log
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$log"; }

train() {
  local name=$1
  shift
  if [ -f "$dir/$name/checkpoints/best.pt" ]; then
    say "reusing $dir/$name"
    return
  fi
  say "train $name: $*"
  "$shopclip" train --config configs/demo.yaml --set "run.dir=$dir/$name" \
    --set "train.max_minutes=$minutes" "$@" >> "$log" 2>&1
}
train cnn-s1 --set run.seed=1
train cnn-s2 --set run.seed=2
train cnn-s3 --set run.seed=3
# A ViT tower of about the CNN's cost: 64 patches of 8x8, width 192, 4 blocks.
train vit --set run.seed=1 --set model.image.type=vit --set model.image.patch_size=8 \
  --set model.image.width=192 --set model.image.layers=4 --set model.image.heads=4 \
  --set model.image.mlp=768
runs=(cnn-s1 cnn-s2 cnn-s3 vit)
for run in "${runs[@]}"; do
  [ -f "$dir/$run/predictions/test.jsonl" ] || "$shopclip" eval --run "$dir/$run" --split test >> "$log" 2>&1
  [ -f "$dir/$run/eval/valid.json" ] || "$shopclip" eval --run "$dir/$run" --split valid >> "$log" 2>&1
done

# The best single run by valid MeanRecall is the reference of every comparison.
best=$(/usr/bin/python3 - "$dir" "${runs[@]}" <<'PY'
import json, sys
scores = {r: json.load(open(f"{sys.argv[1]}/{r}/eval/valid.json"))["scoreJson"]["mean_recall"]
          for r in sys.argv[2:]}
print(max(scores, key=scores.get))
PY
)
say "best single run on valid: $best"

members=()
for run in "${runs[@]}"; do members+=(--run "$dir/$run"); done
seeds=(--run "$dir/cnn-s1" --run "$dir/cnn-s2" --run "$dir/cnn-s3")
out=$dir/out
mkdir -p "$out"
step() { say "$1"; shift; "$@" >> "$log" 2>&1; }
for method in feature score rrf borda; do
  step "ensemble $method, 4 members, tuned on valid" \
    "$shopclip" ensemble "${members[@]}" --method "$method" --tune valid --split test \
    --ref "$answers" --out "$out/ens-$method-tuned"
  step "ensemble $method, 4 members, equal weights" \
    "$shopclip" ensemble "${members[@]}" --method "$method" --split test --ref "$answers" \
    --out "$out/ens-$method-equal"
done
step "ensemble feature, 3 seeds, equal weights" \
  "$shopclip" ensemble "${seeds[@]}" --method feature --split test --ref "$answers" \
  --out "$out/ens-seeds-feature"
step "greedy soup of the seeds (valid), then test" \
  "$shopclip" soup "${seeds[@]}" --method greedy --split valid --out "$out/soup-greedy"
"$shopclip" eval --run "$out/soup-greedy" --split test >> "$log" 2>&1
step "uniform soup of the seeds" \
  "$shopclip" soup "${seeds[@]}" --method uniform --split valid --out "$out/soup-uniform"
"$shopclip" eval --run "$out/soup-uniform" --split test >> "$log" 2>&1
step "QB-Norm on $best, beta tuned on valid" \
  "$shopclip" rerank --run "$dir/$best" --method qb-norm --tune valid --split test \
  --ref "$answers" --out "$out/qb-norm"
# The best combination without transductive tricks: QB-Norm over the feature ensemble's stage 1,
# with the feature weights tuned on valid above.
feature_weights=$(/usr/bin/python3 -c "import json,sys; print(','.join(repr(m['weight']) for m in json.load(open(sys.argv[1]))['members']))" "$out/ens-feature-tuned/ensemble.json")
step "QB-Norm over the tuned feature ensemble" \
  "$shopclip" rerank "${members[@]}" --weights "$feature_weights" --method qb-norm --tune valid \
  --split test --ref "$answers" --out "$out/qb-norm-ensemble"
step "dual softmax on $best (transductive)" \
  "$shopclip" rerank --run "$dir/$best" --method dual-softmax --transductive --tune valid \
  --split test --ref "$answers" --out "$out/dual-softmax"
# The learned reranker on the best run (experiments/rerank_demo.sh: towers frozen, RERANK_MINUTES
# of reranker training (12 by default: 5 minutes gave no gain in rerank-20261207-004750.md),
# K = 32, 64, 100, lambda tuned on valid); its outputs join the table.
mkdir -p "$dir/rerank"
ln -sfn "$(realpath "$dir/$best")" "$dir/rerank/base"
step "learned reranker on $best" bash experiments/rerank_demo.sh "$minutes" "$rerank_minutes" \
  "$dir/rerank"
for k in 32 64 100; do ln -sfn "$(realpath "$dir/rerank/out/learned-k$k")" "$out/learned-k$k"; done
# The best combination: the same reranker over the tuned feature ensemble's stage 1 (K = 32, the
# cheapest K, which gave the reranker's full gain on one run).
step "learned reranker over the tuned feature ensemble" \
  "$shopclip" rerank "${members[@]}" --weights "$feature_weights" --reranker "$dir/rerank/reranker" \
  --method learned --candidates 32 --tune valid --split test --ref "$answers" \
  --out "$out/learned-ensemble"

for result in "$out"/*/ "${runs[@]/#/$dir/}"; do
  result=${result%/}
  name=$(basename "$result")
  [ "$result" = "$dir/$best" ] && continue
  "$shopclip" compare "$dir/$best" "$result" --split test --ref "$answers" \
    --out "$dir/compare/$name.html" >> "$log" 2>&1
done
/usr/bin/python3 experiments/ensemble_record.py "$dir" "$best" "$minutes" "$rerank_minutes" \
  > "experiments/results/ensemble-$stamp.md"
say "record: experiments/results/ensemble-$stamp.md"
cat "experiments/results/ensemble-$stamp.md"
