#!/usr/bin/env bash
# Issue 14's learned reranker on the demo dataset. A bench_small run (configs/demo.yaml, seed 2,
# MINUTES, default 8) is stage 1; a reranker (model.reranker: 2 cross-attention blocks of width
# 128, 16 image tokens) is trained on top of it for RERANK_MINUTES (default 5) with both towers
# frozen and the run's own hard negatives mined once before the first epoch (model.init starts
# mining at once; train.mine_every 100 never repeats it, since frozen towers would mine the same
# lists). Then `shopclip rerank --method learned` at K = 32, 64 and 100 candidates, lambda tuned
# on valid and applied to test, each compared on test with stage 1 alone by `shopclip compare`
# (paired bootstrap). The record goes to experiments/results/rerank-<time>.md.
# Usage: experiments/rerank_demo.sh [MINUTES] [RERANK_MINUTES] [DIR]
#   (after bash launch/demo.sh made datasets/demo; a DIR holding base/ or reranker/ reuses them;
#   experiments/ensemble_demo.sh calls it with its best run as DIR/base)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-8}
rerank_minutes=${2:-5}
stamp=$(date +%Y%m%d-%H%M%S)
dir=${3:-reranks/demo-$stamp}
shopclip=build/shopclip
answers=datasets/demo/answers/test_texts.jsonl
mkdir -p "$dir"
log=$dir/experiment.log
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$log"; }
step() { say "$1"; shift; "$@" >> "$log" 2>&1; }

if [ ! -f "$dir/base/checkpoints/best.pt" ]; then
  step "train the dual encoder ($minutes min)" \
    "$shopclip" train --config configs/demo.yaml --set "run.dir=$dir/base" --set run.seed=2 \
    --set "train.max_minutes=$minutes"
fi
for split in valid test; do
  [ -f "$dir/base/eval/$split.json" ] || [ -f "$dir/base/predictions/$split.jsonl" ] \
    || step "eval base on $split" "$shopclip" eval --run "$dir/base" --split "$split"
done
if [ ! -f "$dir/reranker/checkpoints/best.pt" ]; then
  step "train the reranker on the frozen towers ($rerank_minutes min)" \
    "$shopclip" train --config configs/demo.yaml --set "run.dir=$dir/reranker" \
    --set "model.init=$dir/base/checkpoints/best.pt" --set model.reranker.layers=2 \
    --set model.reranker.width=128 --set model.reranker.heads=4 --set model.reranker.mlp=512 \
    --set model.reranker.image_tokens=16 --set train.rerank_weight=1 --set train.freeze=both \
    --set train.mine_every=100 --set train.ema_decay=0 --set train.warmup_steps=50 \
    --set "train.max_minutes=$rerank_minutes"
fi
mkdir -p "$dir/out" "$dir/compare"
for k in 32 64 100; do
  step "learned rerank at K = $k (lambda tuned on valid), test" \
    "$shopclip" rerank --run "$dir/reranker" --method learned --candidates "$k" --tune valid \
    --split test --ref "$answers" --out "$dir/out/learned-k$k"
  "$shopclip" compare "$dir/base" "$dir/out/learned-k$k" --split test --ref "$answers" \
    --out "$dir/compare/learned-k$k.html" >> "$log" 2>&1
done
/usr/bin/python3 experiments/rerank_record.py "$dir" "$minutes" "$rerank_minutes" \
  > "experiments/results/rerank-$stamp.md"
say "record: experiments/results/rerank-$stamp.md"
cat "experiments/results/rerank-$stamp.md"
