#!/usr/bin/env bash
# The benchmark of issue 2: every figure with the command that produced it and a limit measured
# in the same run. Appends JSON lines to experiments/results/bench-<date>.jsonl and writes a
# Markdown summary beside it.
#
# Usage: experiments/bench.sh [DEMO_RUN_DIR] [--muge]
#   DEMO_RUN_DIR  a finished `launch/demo.sh` run (default: the newest runs/demo-*) whose scores,
#                 wall time and evaluation time are recorded
#   --muge        also make the muge-scale dataset (if missing) and measure prep on it
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
muge=false
demo_run=""
for arg in "$@"; do
  case "$arg" in
    --muge) muge=true ;;
    *) demo_run=$arg ;;
  esac
done
[ -n "$demo_run" ] || demo_run=$(ls -d runs/demo-* 2>/dev/null | sort | tail -n 1 || true)

source experiments/record.sh
start_record bench

record "$shopclip" bench matmul --seconds 10
record "$shopclip" bench train --config configs/bench_small.yaml --seconds 30
[ -f datasets/demo/meta/synth.json ] || "$shopclip" data synth --scale demo --out datasets/demo --seed 1
record "$shopclip" bench prep --config configs/demo.yaml --set data.root=datasets/demo --split train
if $muge; then
  [ -f datasets/muge/meta/synth.json ] || "$shopclip" data synth --scale muge --out datasets/muge --seed 1
  record "$shopclip" bench prep --config configs/bench_small.yaml --set data.root=datasets/muge --split train
fi
record "$shopclip" bench search --pool 30000 --queries 5000 --dim 256
if [ -n "$demo_run" ] && [ -f "$demo_run/summary.json" ]; then
  python3 - "$out" "$demo_run" <<'PY'
import json, sys
out, run = sys.argv[1:]
summary = json.load(open(f"{run}/summary.json"))
valid = json.load(open(f"{run}/eval/valid.json"))["scoreJson"]
row = {"command": f"bash launch/demo.sh  (run {run})",
       "result": {"bench": "demo", "valid": valid, "wall_minutes": summary["wall_seconds_total"] / 60,
                  "steps": summary["steps"], "samples_per_s": summary["samples_per_second"],
                  "valid_eval_seconds": summary["valid_eval_seconds"], "stop_reason": summary["stop_reason"]}}
try:
    row["result"]["single_attribute_valid"] = json.load(open(f"{run}/eval/single_attribute_valid.json"))
except FileNotFoundError:
    pass
open(out, "a").write(json.dumps(row) + "\n")
PY
fi
python3 experiments/summarize_bench.py "$out" > "${out%.jsonl}.md"
cat "${out%.jsonl}.md"
