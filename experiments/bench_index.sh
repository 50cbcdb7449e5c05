#!/usr/bin/env bash
# Issue 16's index figures: `shopclip bench index` over a run's real valid pool (the demo data:
# 6,246 images, 1,000 queries) plus random unit vectors to reach 30,000 and 1,000,000 rows, for
# exact search, HNSW, IVF with flat and PQ codes at several search settings. The record (one
# table per pool size, and the fastest setting that keeps recall@10 >= 0.95) is written by
# experiments/bench_index_record.py to experiments/results/index-<time>.md.
# Usage: experiments/bench_index.sh RUN_DIR   (a trained demo run, e.g. runs/demo-teacher)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
run=${1:?usage: experiments/bench_index.sh RUN_DIR}
stamp=$(date +%Y%m%d-%H%M%S)
out=experiments/results/index-$stamp
shopclip=build/shopclip
# At 6k and 30k rows: IVF with 256 lists (about 4 sqrt(N) at 4,000-30,000 rows).
"$shopclip" bench index --run "$run" --split valid --extra 0,23754 --single-queries 300 \
  --index Flat --index "HNSW32|efSearch=16;efSearch=64;efSearch=256" \
  --index "IVF256,Flat|nprobe=1;nprobe=8;nprobe=32" --index "IVF256,PQ32|nprobe=8;nprobe=32" \
  --index "OPQ32,IVF256,PQ32|nprobe=32" > "$out-small.json" 2> "$out-small.log"
# At 1M rows: IVF with 1,024 lists (k-means on 262,144 sampled rows; 4,096 lists would train on
# all 1M, about 50 TFLOP on this CPU). No HNSW: its build over 1M rows had not finished after 27
# minutes on the 2-core machine of the first record (index-20261207-014643-1m-hnsw-stopped.log).
"$shopclip" bench index --run "$run" --split valid --extra 993754 --single-queries 300 \
  --index Flat --index "IVF1024,Flat|nprobe=8;nprobe=32;nprobe=128" \
  --index "IVF1024,PQ32|nprobe=32;nprobe=128" > "$out-1m.json" 2> "$out-1m.log"
/usr/bin/python3 experiments/bench_index_record.py "$out-small.json" "$out-1m.json" \
  > "$out.md"
cat "$out.md"
