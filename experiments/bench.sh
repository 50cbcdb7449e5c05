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

stamp=$(date +%Y%m%d-%H%M%S)
out=experiments/results/bench-$stamp.jsonl
: > "$out"
record() {  # record COMMAND... : runs it, stores {"command": ..., "result": <its JSON stdout>}
  local command="$*" result
  echo "+ $command" >&2
  result=$("$@" | tail -n 1)
  python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "result": json.loads(sys.argv[2])}, ensure_ascii=False))' \
    "$command" "$result" >> "$out"
}

python3 - "$out" <<'PY'
import json, os, platform, subprocess, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
blas = subprocess.run(["sh", "-c", "ldd build/shopclip | grep -o '/[^ ]*libblas.so.3'"], capture_output=True, text=True).stdout.strip()
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1),
                                    "kernel": platform.release(), "commit": commit + ("+dirty" if dirty else ""),
                                    "blas": blas}}) + "\n")
PY

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
