#!/usr/bin/env bash
# The main job on a fresh Debian bookworm machine, end to end on the built-in dataset:
# install -> build -> make the demo dataset -> preprocess -> train (15-minute budget) -> evaluate
# on valid -> write the test submission -> score it -> report (Markdown, and HTML pages of the
# data and of the run's errors).
# Everything lands in datasets/demo and runs/demo-<time>; the report is runs/demo-<time>/report.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash launch/setup.sh
SHOPCLIP_TARGET=shopclip bash launch/build.sh
shopclip=${SHOPCLIP_BUILD_DIR:-$root/build}/shopclip

data=datasets/demo
run=runs/demo-$(date +%Y%m%d-%H%M%S)
if [ ! -f "$data/meta/synth.json" ]; then
  "$shopclip" data synth --scale demo --out "$data" --seed 1
fi
"$shopclip" prep --config configs/demo.yaml --set "data.root=$data"
"$shopclip" train --config configs/demo.yaml --set "data.root=$data" --set "run.dir=$run"
"$shopclip" eval --run "$run" --split test
"$shopclip" score --ref "$data/answers/test_texts.jsonl" --pred "$run/predictions/test.jsonl" \
  > "$run/eval/test_scored_with_answers.json"
"$shopclip" data baselines --data "$data" --split valid --out "$run/eval/single_attribute_valid.json"
python3 launch/write_report.py "$run" "$data" > "$run/report.md"
"$shopclip" data stats "$data" --out "$run/report/data"
"$shopclip" report "$run" --split valid
cat "$run/report.md"
echo
echo "submission: $run/predictions/test.jsonl"
echo "report:     $run/report.md"
echo "pages:      $run/report/valid.html (errors on valid), $run/report/data/stats.html (the data)"
