#!/usr/bin/env bash
# The GPU checks of issue 15 in one script, for a lent GPU machine that has PyTorch with CUDA but
# none of our Debian packages (the device tool runs it in the repository root, with $OUT as the
# folder whose files come back). Stages run in order of importance while the time budget lasts:
#   facts      the card, driver, CUDA, PyTorch (LibTorch) and NCCL versions
#   build      shopclip + test_mpi against PyTorch's CUDA LibTorch and the carried Debian libraries
#   nccl       the NCCL collective tests, one rank (one GPU)
#   parity     Chinese-CLIP features of this build against the PyTorch reference (parity.sh),
#              encoded on the CPU and on the GPU
#   pipeline   tiny dataset on cuda: prep, train, evaluate, test submission, score; fp32, then bf16
#              autocast (train.amp), then Chinese-CLIP towers with gradient checkpointing
#   resume     the fp32 run's checkpoint resumed with run.device=cpu
#   cnclip     ViT-B/16 + RoBERTa-base (random weights) forward+backward, shopclip and plain
#              PyTorch (experiments/gpu/torch_bench.py) at the same batch, fp32 and bf16
#   small      bench_small training steps on cuda, fp32 and bf16, shopclip and plain PyTorch
# Needs: .devdeps/prefix.tar.xz (experiments/gpu/fetch_deps.sh) and .devdeps/tiny (`shopclip data
# synth --scale tiny --seed 1`), both carried. Writes $OUT/log.txt, results.jsonl, stages.txt,
# build_errors.txt, bin.tar.gz (the binaries, to carry to a second call) and cuda_run.tar.gz (the
# fp32 run's checkpoint and config, to resume on another machine's CPU).
# Usage (device tool): bash experiments/gpu/device_check.sh [BUDGET_SECONDS (default 540)]
set -uo pipefail
out=${OUT:?set OUT to the folder for the results}
budget=${1:-540}
root=$(pwd)
exec > >(tee -a "$out/log.txt") 2>&1
results=$out/results.jsonl
work=/tmp/shopclip-gpu
mkdir -p "$work"

# stage NAME MIN_SECONDS CMD...: runs CMD when at least MIN_SECONDS of the budget are left, cut at
# the budget's end; records its status and time in stages.txt.
stage() {
  local name=$1 need=$2
  shift 2
  # SHOPCLIP_GPU_ONLY="a b": only the stages named (a second call with the carried binaries).
  if [ -n "${SHOPCLIP_GPU_ONLY:-}" ] && [[ " $SHOPCLIP_GPU_ONLY " != *" $name "* ]]; then
    return 1
  fi
  local left=$((budget - SECONDS))
  if ((left < need)); then
    echo "== $name: skipped, ${left}s of the budget left" | tee -a "$out/stages.txt"
    return 1
  fi
  echo "== $name ($(date +%T), ${left}s left)"
  local start=$SECONDS
  # The command (a shell function too) in its own process group, killed whole at the budget's end.
  set -m
  ("$@") &
  local pid=$!
  set +m
  (sleep $((left - 3)) && echo "== $name: out of time" >> "$out/stages.txt" &&
    kill -TERM -- -"$pid") > /dev/null 2>&1 &
  local killer=$!
  wait "$pid"
  local rc=$?
  pkill -P "$killer" sleep 2>/dev/null
  kill "$killer" 2>/dev/null
  echo "== $name: status $rc in $((SECONDS - start))s" | tee -a "$out/stages.txt"
  return $rc
}

facts() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", ".".join(map(str, torch.cuda.nccl.version())), "cudnn", torch.backends.cudnn.version())'
  nvcc --version | tail -n 2
  g++ --version | head -n 1
  cmake --version | head -n 1
  grep PRETTY_NAME /etc/os-release
  echo "cores $(nproc)"
}
# SHOPCLIP_CHECK_DEVICE=cpu rehearses the script's plumbing on a machine without a GPU (with
# build-gpu/ holding CPU binaries); the GPU-only stages are then skipped.
device=${SHOPCLIP_CHECK_DEVICE:-cuda}
[ "$device" = cuda ] && stage facts 5 facts

export PATH=$PATH:/usr/local/cuda/bin
if [ "$device" = cuda ]; then
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
nccl_root=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])')
export SHOPCLIP_TORCH_PREFIX=$torch_prefix
source experiments/gpu/device_env.sh
cuda_lib=$(dirname "$(dirname "$(command -v nvcc)")")/lib64
export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$torch_lib:$nccl_root/lib:$cuda_lib
fi

configure() {
  local nvcc
  nvcc=$(command -v nvcc)
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release "${shopclip_cmake_args[@]}" \
    "-DTorch_DIR=$torch_prefix/Torch" "-DCMAKE_CUDA_COMPILER=$nvcc" \
    "-DCUDAToolkit_ROOT=$(dirname "$(dirname "$nvcc")")" -DSHOPCLIP_NCCL=ON "-DNCCL_INCLUDE_DIR=$nccl_root/include" \
    "-DNCCL_LIBRARY=$nccl_root/lib/libnccl.so.2" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DTORCH_CUDA_ARCH_LIST=9.0 ${SHOPCLIP_GPU_CMAKE_ARGS:-}
}
build() {
  # -k 0: every error of every file in one go.
  cmake --build build-gpu -j "$(nproc)" --target shopclip test_mpi -- -k 0 > "$work/build.log" 2>&1
  local rc=$?
  tail -n 5 "$work/build.log"
  grep -E -B2 -A6 "error|Error|undefined reference" "$work/build.log" | head -c 4000000 \
    > "$out/build_errors.txt"
  return $rc
}
if [ -x build-gpu/shopclip ] && [ -x build-gpu/test_mpi ]; then
  echo "== build: using the carried binaries in build-gpu/"
else
  stage configure 60 configure || exit 1
  stage build 60 build
  [ -x build-gpu/shopclip ] || exit 1
  tar -C build-gpu -czf "$out/bin.tar.gz" shopclip $([ -x build-gpu/test_mpi ] && echo test_mpi)
fi
shopclip=$root/build-gpu/shopclip
"$shopclip" version | tee -a "$results"

nccl_tests() {
  export SHOPCLIP_MPI_TESTS_ONE_RANK=1
  "$MPIEXEC" -np 1 build-gpu/test_mpi --gtest_filter='Nccl*' && return 0
  echo "mpirun failed; the same test as a singleton process"
  build-gpu/test_mpi --gtest_filter='Nccl*'
}
MPIEXEC=${deps_prefix:-/usr}/bin/mpirun.openmpi
[ "$device" = cuda ] && [ -x build-gpu/test_mpi ] && stage nccl 30 nccl_tests

# ---- the tiny pipeline on cuda ---------------------------------------------------------------
data=$work/tiny
rm -rf "$data" && cp -r .devdeps/tiny "$data"
# Chinese-CLIP features (LibTorch's CPU kernels of this build) against the PyTorch reference.
stage parity 20 bash experiments/gpu/parity.sh "$shopclip" "$data"
# The same with the towers on the GPU (CUDA kernels, fused attention in float32).
stage parity_cuda 20 bash experiments/gpu/parity.sh "$shopclip" "$data" cuda
tiny=(--config configs/tiny.yaml --set "data.root=$data" --set run.threads=8)
# run_pipeline NAME SETTINGS...: train on cuda, evaluate valid, write and score the test submission.
run_pipeline() {
  local name=$1
  shift
  local run=$work/runs/$name
  "$shopclip" train "${tiny[@]}" --set "run.dir=$run" --set "run.device=$device" \
    --set train.epochs=10 "$@" &&
    "$shopclip" eval --run "$run" --split valid &&
    "$shopclip" eval --run "$run" --split test &&
    "$shopclip" score --ref "$data/answers/test_texts.jsonl" --pred "$run/predictions/test.jsonl" \
      > "$run/test_scored.json" || return 1
  python3 - "$name" "$run" <<'PY' | tee -a "$results"
import json, sys
name, run = sys.argv[1], sys.argv[2]
summary = json.load(open(f"{run}/summary.json"))
print(json.dumps({"bench": "pipeline", "run": name, "summary": summary,
                  "test_scored": json.load(open(f"{run}/test_scored.json"))}))
PY
}
stage prep 20 "$shopclip" prep "${tiny[@]}"
stage pipeline_fp32 40 run_pipeline cuda_fp32
tar -C "$work/runs" -czf "$out/cuda_run.tar.gz" cuda_fp32 2>/dev/null
resume_on_cpu() {
  rm -rf "$work/runs/cpu_resume" && cp -r "$work/runs/cuda_fp32" "$work/runs/cpu_resume" &&
    "$shopclip" train "${tiny[@]}" --set "run.dir=$work/runs/cpu_resume" --set run.device=cpu \
      --set train.epochs=11 --resume &&
    grep -E "resumed from|epoch 11" "$work/runs/cpu_resume/log.txt"
}
stage resume_cpu 30 resume_on_cpu
[ "$device" = cuda ] || exit 0
stage pipeline_amp 40 run_pipeline cuda_amp --set train.amp=true
stage pipeline_checkpointing 40 run_pipeline cuda_amp_cnclip_checkpointing --set train.amp=true \
  --set "model.chinese_clip.vision_config=$root/tests/fixtures/chinese_clip_tiny/vision.json" \
  --set "model.chinese_clip.text_config=$root/tests/fixtures/chinese_clip_tiny/text.json" \
  --set model.embed_dim=24 \
  --set model.chinese_clip.grad_checkpointing=true \
  --set "model.text.vocab=$root/configs/chinese_clip/vocab.txt" --set model.text.context_length=24


# ---- throughput: Chinese-CLIP sizes, shopclip against plain PyTorch at the same batch ---------
vit=(--vision-config configs/chinese_clip/ViT-B-16.json
  --text-config configs/chinese_clip/RoBERTa-wwm-ext-base-chinese.json)
# cnclip_pair AMP_FLAG BATCHES...: shopclip at the first batch that fits, then PyTorch at it.
cnclip_pair() {
  local amp=$1 fitted=""
  shift
  for batch in "$@"; do
    if "$shopclip" bench cnclip "${vit[@]}" --device cuda $amp --batch "$batch" --seconds 6 \
      > "$work/cnclip.json"; then
      cat "$work/cnclip.json" >> "$results"
      fitted=$batch
      break
    fi
    echo "batch $batch did not run (out of memory?)"
  done
  [ -n "$fitted" ] || return 1
  python3 experiments/gpu/torch_bench.py "${vit[@]}" $amp --batch "$fitted" --seconds 6 \
    >> "$results"
}
stage torch_matmul 20 python3 experiments/gpu/torch_bench.py --matmul --seconds 2 >> "$results"
stage cnclip_bf16 60 cnclip_pair --amp 1024 512 256
stage cnclip_fp32 60 cnclip_pair "" 512 256 128

# small BATCH [--amp]: bench_small's training step, shopclip then the same in plain PyTorch.
small() {
  local batch=$1 amp=${2:-}
  "$shopclip" bench train --config configs/bench_small.yaml --set run.device=cuda --seconds 8 \
    --set "train.batch_size=$batch" $([ -n "$amp" ] && echo --set train.amp=true) >> "$results" &&
    python3 experiments/gpu/torch_bench.py --small --batch "$batch" $amp --seconds 8 >> "$results"
}
stage small_fp32 40 small 256
stage small_bf16 40 small 256 --amp
stage small_bf16_batch4096 40 small 4096 --amp
echo "== done in ${SECONDS}s"
