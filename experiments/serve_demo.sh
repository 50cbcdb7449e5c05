#!/usr/bin/env bash
# Issue 16's serving figures on the demo data: `shopclip serve` over a saved index of the test
# pool, loaded by experiments/serve_bench.py at 1, 8 and 32 concurrent clients (SECONDS each,
# default 20), for a demo run and for a run with a smaller text tower (what a distilled student
# would buy: width 128, 1 block, the same image tower; trained SMALL_MINUTES, default 3, since only
# its speed is measured here, its MeanRecall is recorded beside it). Latency per request is split
# into queue wait, text tower, search (the server's /metrics) and the rest (HTTP, JSON, hand-offs).
# The record is written by experiments/serve_record.py to experiments/results/serve-<time>.md.
# Usage: experiments/serve_demo.sh RUN_DIR [SECONDS] [SMALL_MINUTES] [OUT_DIR]
#   (RUN_DIR: a demo run, e.g. ensembles/demo-*/cnn-s1; OUT_DIR holding small/ reuses it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run=${1:?usage: experiments/serve_demo.sh RUN_DIR [SECONDS] [SMALL_MINUTES] [OUT_DIR]}
seconds=${2:-20}
small_minutes=${3:-3}
stamp=$(date +%Y%m%d-%H%M%S)
dir=${4:-serving/demo-$stamp}
shopclip=build/shopclip
texts=datasets/demo/test_texts.jsonl
mkdir -p "$dir"
log=$dir/experiment.log
say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$log"; }

if [ ! -f "$dir/small/checkpoints/best.pt" ]; then
  say "train the small-text-tower run ($small_minutes min)"
  "$shopclip" train --config configs/demo.yaml --set "run.dir=$dir/small" \
    --set model.text.width=128 --set model.text.layers=1 --set model.text.heads=2 \
    --set model.text.mlp=512 --set "train.max_minutes=$small_minutes" >> "$log" 2>&1
fi
ln -sfn "$(realpath "$run")" "$dir/demo"

for name in demo small; do
  [ -d "$dir/index-$name" ] || "$shopclip" index build --run "$dir/$name" --split test \
    --out "$dir/index-$name" >> "$log" 2>&1
  [ -f "$dir/$name/eval/valid.json" ] || "$shopclip" eval --run "$dir/$name" --split valid \
    >> "$log" 2>&1
  say "serve $name"
  rm -f "$dir/$name.port"
  "$shopclip" serve --run "$dir/$name" --index-dir "$dir/index-$name" --port 0 \
    --port-file "$dir/$name.port" --threads 2 > "$dir/serve-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do [ -f "$dir/$name.port" ] && break; sleep 0.1; done
  /usr/bin/python3 experiments/serve_bench.py "$(cat "$dir/$name.port")" "$texts" "$seconds" \
    1,8,32 > "$dir/figures-$name.json" 2>> "$log"
  kill -TERM "$pid"
  wait "$pid"
done
/usr/bin/python3 experiments/serve_record.py "$dir" "$seconds" > "experiments/results/serve-$stamp.md"
say "record: experiments/results/serve-$stamp.md"
cat "experiments/results/serve-$stamp.md"
