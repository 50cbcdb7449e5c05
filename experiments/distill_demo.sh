#!/usr/bin/env bash
# Issue 13's figures: a teacher (configs/demo.yaml, bench_small trained TEACHER_EPOCHS), its
# embedding cache, then configs/sweeps/distill_demo.yaml (a smaller student without a teacher,
# with each distillation term alone and with all three; two seeds; MINUTES per trial, one after
# another), then the encoding speed of teacher and student (`bench encode`) and the record:
# experiments/results/distill-<date>.md (the sweep's table, the teacher's valid MeanRecall, the
# share of the teacher-student gap each row closes, parameters, FLOPs, images/s, queries/s).
# Steps already done (the teacher's summary.json, the cache's manifest) are not redone.
# Usage: experiments/distill_demo.sh [MINUTES (default 4)] [TEACHER_EPOCHS (default 5)]
#   (after launch/demo.sh made datasets/demo)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-4}
teacher_epochs=${2:-5}
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
teacher=runs/demo-teacher
cache=datasets/demo/teacher-cache
stamp=$(date +%Y%m%d-%H%M%S)

if [ ! -f "$teacher/summary.json" ]; then
  "$shopclip" train --config configs/demo.yaml --set "run.dir=$teacher" \
    --set train.max_minutes=0 \
    --set "train.epochs=$teacher_epochs"
fi
if [ ! -f "$cache/manifest.json" ]; then
  "$shopclip" distill cache --config configs/demo.yaml --teacher "$teacher" --out "$cache"
fi
sweep_dir=${SWEEP_DIR:-sweeps/distill_demo-$stamp}
if [ ! -f "$sweep_dir/results.md" ]; then
  SWEEP_FILE=configs/sweeps/distill_demo.yaml SWEEP_DIR=$sweep_dir experiments/sweep_demo.sh "$minutes"
fi

source experiments/record.sh
start_record distill-encode
record "$shopclip" bench encode --run "$teacher"
# The student's architecture is the same in every row: the baseline's first seed stands for it.
student=$(ls -d "$sweep_dir"/trials/*/ | head -n 1)
record "$shopclip" bench encode --run "${student%/}"
/usr/bin/python3 experiments/distill_record.py "$sweep_dir" "$teacher" "$out" \
  > "experiments/results/distill-$stamp.md"
cat "experiments/results/distill-$stamp.md"
