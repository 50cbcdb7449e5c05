#!/usr/bin/env bash
# Issue 11's figure: configs/sweeps/lr_batch.yaml (learning rate x batch size, bench_small on the
# demo dataset) run by `shopclip sweep`, each trial with a budget of MINUTES (default 4, as in the
# file), trials one after another. Records the results table, the sweep's total time, the sum of
# the trials' own wall times (summary.json's wall_seconds_total: training, evaluations, the
# final one included) and the difference: the sweep's overhead (the data check, process
# start-up, the tables).
# Usage: [SWEEP_FILE=configs/sweeps/recipes.yaml] experiments/sweep_demo.sh [MINUTES]
#   (after bash launch/demo.sh made datasets/demo; the record is written by sweep_record.py)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-4}
stamp=$(date +%Y%m%d-%H%M%S)
out=experiments/results/sweep-$stamp
sweep_file=${SWEEP_FILE:-configs/sweeps/lr_batch.yaml}
name=$(basename "$sweep_file" .yaml)
sweep_dir=${SWEEP_DIR:-sweeps/$name-$stamp}
command=(build/shopclip sweep "$sweep_file" --set "train.max_minutes=$minutes" --out "$sweep_dir")
start=$(date +%s.%N)
"${command[@]}" > "$out.log" 2>&1
end=$(date +%s.%N)
/usr/bin/python3 experiments/sweep_record.py "$sweep_dir" "$start" "$end" "${command[*]}" \
  "Trials budgeted $minutes min each, one after another." > "$out.md"
cat "$out.md"
