#!/usr/bin/env bash
# Benchmark of issue 4: Chinese-CLIP ViT-B/16 + RoBERTa-wwm-ext-base-chinese on this machine's
# CPU with random weights: forward and forward + backward seconds per sample (batch 8, queries of
# ~20 tokens in a 52-token context), peak memory, and the achieved FLOP/s as a share of the
# matrix-product rate measured in the same run. Records experiments/results/cnclip-<date>.{jsonl,md}.
# The text tower computes each batch's longest query (20 tokens by default; --query-tokens 52 is
# the whole context, as before the trim).
# Usage: experiments/bench_cnclip.sh [SECONDS_PER_MEASUREMENT (default 30)] [more bench options]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
seconds=${1:-30}
source experiments/record.sh
start_record cnclip
record "$shopclip" bench cnclip --vision-config configs/chinese_clip/ViT-B-16.json \
  --text-config configs/chinese_clip/RoBERTa-wwm-ext-base-chinese.json --batch 8 \
  --context-length 52 --seconds "$seconds" "${@:2}"
python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
m, row = lines[0]["machine"], lines[1]
x = row["result"]
print(f"# Chinese-CLIP ViT-B/16 + RoBERTa-base on CPU ({sys.argv[1]})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, BLAS {m['blas']}, commit {m['commit']}.")
print(f"Command: `{row['command']}`\n")
print("| figure | value |\n| --- | --- |")
print(f"| parameters | {x['parameters_m']:.1f} M |")
tokens = x.get("text_tokens_computed", x["context_length"])
print(f"| forward FLOP per sample (image 224² + query, {tokens} of {x['context_length']} tokens computed) | {x['forward_gflop_per_sample']:.1f} GFLOP |")
print(f"| forward | {x['forward_s_per_sample']:.3f} s/sample, {x['forward_gflops']:.1f} GFLOP/s = {100 * x['forward_share_of_matmul']:.1f} % of matmul |")
print(f"| forward + backward | {x['train_s_per_sample']:.3f} s/sample, {x['train_gflops']:.1f} GFLOP/s = {100 * x['train_share_of_matmul']:.1f} % of matmul |")
print(f"| peak memory after forward / after forward + backward (batch {x['batch']}) | {x['forward_peak_rss_mib']:.0f} / {x['train_peak_rss_mib']:.0f} MiB |")
print(f"| 2048² matrix product, same run (the faster of OpenBLAS and oneDNN since 8 Dec 2026) | {x['matmul_gflops']:.1f} GFLOP/s ({x['threads']} threads) |")
if x.get("cpu_gemm"):
    print(f"| linear layers' products on | {x['cpu_gemm']} |")
PY
cat "${out%.jsonl}.md"
