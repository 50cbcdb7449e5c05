#!/usr/bin/env bash
# Issue 12's GradCache figures: bench_small trained on one process with global batches 256 ..
# 8192, once as one whole-batch step (where it fits: up to PLAIN_MAX, default 2048) and once in
# micro-batches of MICRO (default 256, train.micro_batch). Per figure: step time, samples/s and
# the growth of the peak resident memory over what the process held before its first step (the
# model, the optimizer and the random inputs excluded). Each configuration runs in its own process
# (the peak is a high-water mark). The logit matrices of the loss, 2 x B x B floats, are what
# GradCache cannot make smaller: they are listed beside the memory.
# Usage: experiments/bench_gradcache.sh [BATCHES (default "256 512 1024 2048 4096 8192")]
# Appends to experiments/results/gradcache-<date>.jsonl and writes a Markdown table beside it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=$(realpath "${SHOPCLIP_BINARY:-build/shopclip}")
batches=${1:-256 512 1024 2048 4096 8192}
micro=${MICRO:-256}
plain_max=${PLAIN_MAX:-2048}
source experiments/record.sh
start_record gradcache

# Timed steps: about 4096 samples' worth per measurement, at least 2 (one warm-up step first).
steps_for() { local n=$((4096 / $1)); echo $((n < 2 ? 2 : n)); }
for batch in $batches; do
  steps=$(steps_for "$batch")
  if [ "$batch" -le "$plain_max" ]; then
    record "$shopclip" bench train --config configs/bench_small.yaml --warmup-steps 1 \
      --steps "$steps" --set train.batch_size="$batch"
  fi
  if [ "$batch" -gt "$micro" ]; then
    record "$shopclip" bench train --config configs/bench_small.yaml --warmup-steps 1 \
      --steps "$steps" --set train.batch_size="$batch" --set train.micro_batch="$micro"
  fi
done

/usr/bin/python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
m = lines[0]["machine"]
rows = [l["result"] for l in lines[1:]]
plain = {r["global_batch"]: r for r in rows if r["micro_batch"] == 0}
print(f"# GradCache: memory and step time against the whole-batch step ({sys.argv[1]})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, commit {m['commit']}, BLAS {m['blas']}.\n")
print("bench_small (CNN image tower, 2-layer text transformer, 3.66M parameters) on one process, random "
      "inputs, InfoNCE. Memory = growth of the peak resident set over the process before its first step. "
      "The logit matrices (2 x B x B float32, forward and their gradients alike) are the part of the loss "
      "that no micro-batching removes.\n")
print("| global batch | micro-batch | step ms | samples/s | GFLOP/s (3x forward) | share of matmul | peak memory growth MiB | logit matrices MiB | step time / whole-batch step |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sorted(rows, key=lambda r: (r["global_batch"], r["micro_batch"])):
    b = r["global_batch"]
    logits = 2 * b * b * 4 / 2**20
    ratio = f"{r['step_ms'] / plain[b]['step_ms']:.2f}" if r["micro_batch"] and b in plain else "-"
    print(f"| {b} | {r['micro_batch'] or 'whole'} | {r['step_ms']:.0f} | {r['samples_per_s']:.1f} | "
          f"{r['model_gflops']:.1f} | {100 * r['share_of_matmul']:.1f} % | {r['cpu_peak_growth_mib']:.0f} | "
          f"{logits:.0f} | {ratio} |")
print("\nGFLOP/s counts the model's forward + backward (3x forward); GradCache's second forward is extra work "
      "not counted, so its share of matmul is lower by construction. Commands are in the .jsonl, one per row.")
PY
cat "${out%.jsonl}.md"
