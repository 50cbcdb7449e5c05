#!/usr/bin/env bash
# Issue 11's figure: configs/sweeps/lr_batch.yaml (learning rate x batch size, bench_small on the
# demo dataset) run by `shopclip sweep`, each trial with a budget of MINUTES (default 4, as in the
# file), trials one after another. Records the results table, the sweep's total time, the sum of
# the trials' own wall times (summary.json's wall_seconds_total: training, evaluations, the
# final one included) and the difference: the sweep's overhead (the data check, process
# start-up, the tables).
# Usage: experiments/sweep_demo.sh [MINUTES]   (after bash launch/demo.sh made datasets/demo)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
minutes=${1:-4}
stamp=$(date +%Y%m%d-%H%M%S)
out=experiments/results/sweep-$stamp
sweep_dir=${SWEEP_DIR:-sweeps/lr_batch-$stamp}
command=(build/shopclip sweep configs/sweeps/lr_batch.yaml --set "train.max_minutes=$minutes"
  --out "$sweep_dir")
start=$(date +%s.%N)
"${command[@]}" > "$out.log" 2>&1
end=$(date +%s.%N)
/usr/bin/python3 - "$sweep_dir" "$start" "$end" "${command[*]}" "$minutes" > "$out.md" <<'PY'
import glob, json, os, platform, sys
sweep, start, end, command, minutes = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
trials = sorted(glob.glob(f"{sweep}/trials/*/summary.json"))
inside = sum(json.load(open(t))["wall_seconds_total"] for t in trials)
print(f"# Sweep on the demo dataset ({os.path.basename(sweep)})\n")
print(f"Command: `{command}` (trials budgeted {minutes} min each, one after another). Machine: {cpu}, "
      f"{os.cpu_count()} cores, kernel {platform.release()}.\n")
print(open(f"{sweep}/results.md").read())
print(f"Sweep wall time {end - start:.0f} s for {len(trials)} trials; the trials' own wall time "
      f"(train's wall_seconds_total: training and its evaluations, the final one included) {inside:.0f} s; the rest, "
      f"{end - start - inside:.0f} s ({100 * (end - start - inside) / (end - start):.1f} %), is the sweep's "
      "overhead: the data check before the trials, starting each trial's process (loading LibTorch, before train's clock "
      "starts) and the tables.")
PY
cat "$out.md"
