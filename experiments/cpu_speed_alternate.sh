#!/usr/bin/env bash
# bench_small configurations run in turn, several rounds (issue 19): a VM's speed drifts by
# +-15 % within minutes, so one figure per configuration says little; alternating them puts each
# round's figures under the same conditions. Each configuration is LABEL=SETTINGS, where SETTINGS
# are environment assignments (NAME=value) and `bench train` options, in any order.
# Writes experiments/results/cpu-alternate-<date>.jsonl and a Markdown record beside it (each
# configuration's median, range and per-round figures).
# Usage: experiments/cpu_speed_alternate.sh ROUNDS SECONDS LABEL=SETTINGS [LABEL=SETTINGS ...]
# e.g.   experiments/cpu_speed_alternate.sh 5 20 default= openblas=SHOPCLIP_CPU_GEMM=openblas
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
rounds=$1 seconds=$2
shift 2
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
source experiments/record.sh
start_record cpu-alternate
for round in $(seq 1 "$rounds"); do
  for configuration in "$@"; do
    label=${configuration%%=*}
    settings=${configuration#*=}
    env_assignments=() options=()
    for word in $settings; do
      if [[ $word =~ ^[A-Z_][A-Z0-9_]*= ]]; then env_assignments+=("$word"); else options+=("$word"); fi
    done
    echo "[alternate] round $round: $label" >&2
    record env "${env_assignments[@]}" "$shopclip" bench train --config configs/bench_small.yaml \
      --seconds "$seconds" "${options[@]}"
    # The label travels with the figure (record writes one line per command).
    python3 - "$out" "$label" "$round" <<'PY'
import json, sys
path, label, round_ = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(path).read().splitlines()
last = json.loads(lines[-1])
last["label"], last["round"] = label, round_
lines[-1] = json.dumps(last, ensure_ascii=False)
open(path, "w").write("\n".join(lines) + "\n")
PY
  done
done
/usr/bin/python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
machine, runs = lines[0]["machine"], lines[1:]
print("# bench_small configurations run alternately (issue 19)\n")
print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, kernel "
      f"{machine['kernel']}, commit {machine['commit']}. Record: `{sys.argv[1]}`. Each round runs "
      "every configuration once, in the order below; the share is of the matrix-product rate the "
      "same process measured (the faster of OpenBLAS and oneDNN on a 2048 x 2048 product).\n")
labels = list(dict.fromkeys(r["label"] for r in runs))
print("| configuration | command | samples/s median (range) | share median (range) | products on |")
print("| --- | --- | --- | --- | --- |")
for label in labels:
    mine = [r for r in runs if r["label"] == label]
    rates = [r["result"]["samples_per_s"] for r in mine]
    shares = [100 * r["result"]["share_of_matmul"] for r in mine]
    print(f"| {label} | `{mine[0]['command']}` | {statistics.median(rates):.1f} "
          f"({min(rates):.1f}-{max(rates):.1f}) | {statistics.median(shares):.1f} % "
          f"({min(shares):.1f}-{max(shares):.1f}) | {mine[0]['result'].get('cpu_gemm', '')} |")
print("\n| round | configuration | samples/s | share | matrix-product rate GFLOP/s |")
print("| --- | --- | --- | --- | --- |")
for r in runs:
    res = r["result"]
    print(f"| {r['round']} | {r['label']} | {res['samples_per_s']:.1f} | "
          f"{100 * res['share_of_matmul']:.1f} % | {res['matmul_gflops']:.1f} |")
PY
cat "${out%.jsonl}.md"
