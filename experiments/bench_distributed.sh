#!/usr/bin/env bash
# The benchmark of issue 3 (data-parallel training), every figure with its command and the
# machine it ran on:
#   - bench_small training with 1 rank and with 2 ranks on this machine (same batch per rank,
#     the cores split between the ranks), and the share of step time spent in communication;
#   - time and peak memory per rank of the contrastive loss in local and full mode as the global
#     batch grows from 256 to 8192 (2 ranks, 256-dim embeddings), next to the logit matrices'
#     own size.
# Appends JSON lines to experiments/results/dist-<date>.jsonl and writes a Markdown table beside it.
# Usage: experiments/bench_distributed.sh [SECONDS_PER_TRAINING_MEASUREMENT (default 45)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
seconds=${1:-45}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source experiments/record.sh
start_record dist

train=(bench train --config configs/bench_small.yaml --seconds "$seconds")
# This VM's speed drifts by tens of percent over minutes: alternate the two set-ups, twice.
for round in 1 2; do
  record "$shopclip" "${train[@]}"
  record mpirun -np 2 --bind-to none "$shopclip" "${train[@]}"
done
for mode in local full; do
  for batch in 256 512 1024 2048 4096 8192; do
    record mpirun -np 2 --bind-to none "$shopclip" bench loss --mode "$mode" --global-batch "$batch" --dim 256
  done
done

python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
machine = lines[0]["machine"]
rows = lines[1:]
print(f"# Distributed benchmark ({sys.argv[1]})\n")
print(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, kernel {machine['kernel']}, "
      f"{machine['mpi']}, BLAS {machine['blas']}, commit {machine['commit']}.\n")
print("## bench_small training, same batch per rank\n")
print("| ranks | threads/rank | global batch | samples/s | step ms | communication share | model GFLOP/s | share of the ranks' matmul rate | command |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
train = [r for r in rows if r["result"]["bench"] == "train"]
for r in train:
    x = r["result"]
    print(f"| {x['ranks']} | {x['threads_per_rank']} | {x['global_batch']} | {x['samples_per_s']:.1f} | {x['step_ms']:.0f} | "
          f"{100 * x['communication_share']:.1f} % | {x['model_gflops']:.1f} | {100 * x['share_of_matmul']:.1f} % of {x['matmul_gflops']:.1f} | `{r['command']}` |")
for one, two in zip(train[0::2], train[1::2]):
    print(f"\n2 ranks / 1 rank throughput, measured one after the other: "
          f"{two['result']['samples_per_s'] / one['result']['samples_per_s']:.2f}x")
print()
print("## Contrastive loss alone (forward + backward), 2 ranks, d = 256\n")
print("| mode | global batch | ms per step | peak memory growth per rank (MiB) | logit matrices per rank (MiB) |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    x = r["result"]
    if x["bench"] != "loss":
        continue
    print(f"| {x['mode']} | {x['global_batch']} | {x['step_ms']:.1f} | {x['peak_growth_mib_per_rank']:.0f} | {x['logit_matrices_mib']:.0f} |")
print("\nCommands are in the .jsonl beside this file, one per figure.")
PY
cat "${out%.jsonl}.md"
