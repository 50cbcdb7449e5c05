#!/usr/bin/env bash
# Issue 19's figures: bench_small's training speed on this CPU in one run, each figure against the
# matrix-product rate that `bench train` measures in the same process and against a plain PyTorch
# loop of the same architecture run in the same session (experiments/gpu/torch_bench.py --small
# --device cpu, /usr/bin/python3's torch, the same kernels as LibTorch 1.13; as a user runs it and
# with the OpenBLAS kernels shopclip picks): channels-last (the default) and [B, C, H, W]
# layouts, queries trimmed to their 18 tokens (the default) and all 32 computed as the PyTorch
# loop does, the ViT tower, an operator profile of each tower type, and with BEFORE=<an older
# shopclip binary> the same figure of that build (before/after in one run).
# KERNELS=avx2 runs every command of the record (shopclip, the matrix-product rate it measures,
# the PyTorch loop) with AVX2 kernels only, for an AVX2 figure on an AVX-512 machine: OpenBLAS's
# Haswell kernels, oneDNN capped at AVX2, ATen's AVX2 kernels (shopclip's own kernels are compiled
# for baseline x86-64 either way). The record names the settings.
# Writes experiments/results/cpu-speed[-avx2]-<date>.jsonl and a Markdown record beside it.
# Usage: [BEFORE=/path/to/old/shopclip] [KERNELS=avx2] experiments/cpu_speed.sh [SECONDS per figure,
#        default 30]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:-30}
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
name=cpu-speed
case "${KERNELS:-}" in
  "") ;;
  avx2)
    export OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
    name=cpu-speed-avx2 ;;
  *) echo "cpu_speed.sh: KERNELS must be avx2 or unset, not '$KERNELS'" >&2; exit 2 ;;
esac
source experiments/record.sh
start_record "$name"
small=(--config configs/bench_small.yaml --seconds "$seconds")
vit=(--set model.image.type=vit --set model.image.patch_size=8 --set model.image.width=256
     --set model.image.layers=4 --set model.image.mlp=1024)
record "$shopclip" bench train "${small[@]}" --profile
record "$shopclip" bench train "${small[@]}" --set model.image.channels_last=false --profile
# The text tower trims padding; the PyTorch loop computes all 32 tokens. The same work here:
record "$shopclip" bench train "${small[@]}" --query-tokens 32
# ... and as the previous round ran (all tokens, [B, C, H, W]):
record "$shopclip" bench train "${small[@]}" --query-tokens 32 --set model.image.channels_last=false
torch_loop=(/usr/bin/python3 experiments/gpu/torch_bench.py --small --device cpu --batch 256
            --seconds "$seconds")
# The loop as a user runs it, then with the OpenBLAS kernels shopclip asks for (core/cpu_blas.h).
record "${torch_loop[@]}"
core=$("$shopclip" version | python3 -c 'import json, sys; print(json.load(sys.stdin)["libraries"].get("openblas_core", ""))')
[ -z "$core" ] || record env "OPENBLAS_CORETYPE=$core" "${torch_loop[@]}"
if [ -n "${BEFORE:-}" ]; then
  record "$BEFORE" bench train "${small[@]}"
fi
record "$shopclip" bench train "${small[@]}" "${vit[@]}" --profile
/usr/bin/python3 experiments/cpu_speed_record.py "$out" > "${out%.jsonl}.md"
cat "${out%.jsonl}.md"
