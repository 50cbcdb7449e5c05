#!/usr/bin/env bash
# Issue 13's figures: a teacher (TEACHER_CONFIG, trained TEACHER_EPOCHS epochs, or within the
# config's own time budget when TEACHER_EPOCHS=0), its embedding cache, then a distillation sweep
# (SWEEP_FILE: a student without a teacher, with each distillation term alone and with mixes; two
# seeds; MINUTES per trial, one after another), then the encoding speed of teacher and student
# (`bench encode`) and the record: experiments/results/distill-<date>.md (the sweep's table, the
# teacher's valid MeanRecall, the share of the teacher-student gap each row closes, parameters,
# FLOPs, images/s, queries/s). Steps already done (the teacher's summary.json, the cache's
# manifest, the sweep's results.md in SWEEP_DIR) are not redone.
# Usage: [TEACHER_CONFIG=... TEACHER_EPOCHS=... SWEEP_FILE=... SWEEP_DIR=...]
#         experiments/distill_demo.sh [MINUTES (default 4)]
#   Defaults: the smaller student of configs/sweeps/distill_demo.yaml under bench_small
#   (configs/demo.yaml) trained 5 epochs. The teacher's run directory and its cache are the paths
#   the sweep file names in distill.teacher and distill.teacher_cache. (After launch/demo.sh made
#   datasets/demo.)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-4}
teacher_config=${TEACHER_CONFIG:-configs/demo.yaml}
teacher_epochs=${TEACHER_EPOCHS:-5}
sweep_file=${SWEEP_FILE:-configs/sweeps/distill_demo.yaml}
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
stamp=$(date +%Y%m%d-%H%M%S)

# The sweep's base settings name the teacher run and the cache its trials read.
sweep_setting() {
  sed -n "s/^ *- *$1=\(.*\)\$/\1/p" "$sweep_file" | head -n 1
}
teacher=$(sweep_setting distill.teacher)
cache=$(sweep_setting distill.teacher_cache)
if [ -z "$teacher" ] || [ -z "$cache" ]; then
  echo "$sweep_file: its base settings need distill.teacher=... and distill.teacher_cache=..." >&2
  exit 1
fi

if [ ! -f "$teacher/summary.json" ]; then
  teacher_budget=()
  if [ "$teacher_epochs" != 0 ]; then
    teacher_budget=(--set train.max_minutes=0 --set "train.epochs=$teacher_epochs")
  fi
  "$shopclip" train --config "$teacher_config" --set "run.dir=$teacher" "${teacher_budget[@]}"
fi
if [ ! -f "$cache/manifest.json" ]; then
  "$shopclip" distill cache --config "$teacher_config" --teacher "$teacher" --out "$cache"
fi
name=$(basename "$sweep_file" .yaml)
sweep_dir=${SWEEP_DIR:-sweeps/$name-$stamp}
if [ ! -f "$sweep_dir/results.md" ]; then
  SWEEP_FILE=$sweep_file SWEEP_DIR=$sweep_dir experiments/sweep_demo.sh "$minutes"
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
