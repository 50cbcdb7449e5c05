#!/usr/bin/env bash
# The command registry with the real binary: every benchmark runs with its own options and prints
# one JSON object with its figures; an option of another benchmark is refused; a one-process
# command started under mpirun ends with a message naming it (and what may run as several);
# `version` names the libraries the installed packages provide and the BLAS actually loaded;
# bench train --profile gives an operator table; bench encode measures a one-epoch tiny run;
# bench train and bench loss run as 2 ranks. Kept short: each benchmark is timed for well under
# a second (these are checks that the commands work, not measurements).
# Usage: commands.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-commands-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "COMMANDS E2E FAILURE: $*" >&2; exit 1; }
# expect_error MESSAGE CMD...: CMD must fail and say MESSAGE.
expect_error() {
  local message=$1
  shift
  if "$@" > "$work/error.log" 2>&1; then
    fail "accepted: $*"
  fi
  grep -q -F -- "$message" "$work/error.log" || { cat "$work/error.log"; fail "no '$message'"; }
}
python=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# has_keys JSON_FILE BENCH KEY...: the last stdout line is one JSON object of that bench with
# every key a finite positive number.
has_keys() {
  local file=$1 bench=$2; shift 2
  $python - "$file" "$bench" "$@" <<'PY' || fail "bench $2: unexpected output: $(cat "$1")"
import json, math, sys
path, bench, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
result = json.loads(open(path).read().strip().splitlines()[-1])
assert result["bench"] == bench, result
for key in keys:
    value = result[key]
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
PY
}

data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 > /dev/null 2>&1
tiny=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data")

echo "== version: the build, the libraries compiled against, the BLAS loaded, the machine"
"$shopclip" version > "$work/version.json"
$python - "$work/version.json" <<'PY' || fail "shopclip version does not describe this build"
import json, os, subprocess, sys
v = json.load(open(sys.argv[1]))
def installed(package):
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                          capture_output=True, text=True).stdout
libraries = v["libraries"]
assert installed("libfaiss-dev").startswith(libraries["faiss"] + "-"), libraries
assert installed("libhdf5-dev").startswith(libraries["hdf5"] + "+"), libraries
assert libraries["mpi"].startswith("Open MPI v"), libraries
assert installed("libopenmpi-dev").startswith(libraries["mpi"][len("Open MPI v"):] + "-"), libraries
assert "openblas-openmp" in libraries["blas_loaded"], libraries  # the BLAS the build links first
# OpenBLAS runs kernels of this CPU's vector width (core/cpu_blas.h re-executes the binary when
# it loaded a fallback such as "Prescott" on a CPU model newer than the library).
flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":")[1].split())
if {"avx2", "fma"} <= flags and not os.environ.get("OPENBLAS_CORETYPE"):
    modern = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"}
    assert libraries["openblas_core"].lower() in modern, libraries
assert libraries["libtorch_headers"].startswith("1.13"), libraries
assert v["build"]["build_type"] == "Release" and v["build"]["compiler"].startswith("GNU "), v
assert "-O3" in v["build"]["flags"], v
assert v["machine"]["cores"] == os.cpu_count() and v["machine"]["memory_gib"] > 0, v
# With the NCCL backend, the NCCL version of the headers it was built against.
if v["build"]["nccl_backend"]:
    import re
    assert re.fullmatch(r"\d+\.\d+\.\d+", v["build"]["nccl_headers"]), v["build"]
PY

echo "== every benchmark with its own options"
"$shopclip" bench matmul --seconds 0.2 --threads 1 > "$work/matmul.json"
has_keys "$work/matmul.json" matmul gflops
"$shopclip" bench train "${tiny[@]}" --seconds 0.5 --profile=3 > "$work/train.json" \
  2> "$work/train.log"
has_keys "$work/train.json" train samples_per_s step_ms matmul_gflops share_of_matmul
# The operator profile: in the JSON (3 steps, operators inside the window, a convolution and a
# backward operator among them) and as a table in the log.
$python - "$work/train.json" <<'PY' || fail "bench train --profile: no usable profile"
import json, sys
profile = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["profile"]
assert profile["steps"] == 3, profile["steps"]
names = [op["name"] for op in profile["operators"]]
assert "aten::convolution" in names and any("Backward" in n for n in names), names[:20]
assert 0 < profile["operator_ms"] <= profile["window_ms"], profile
PY
grep -q "| outside operators |" "$work/train.log" || fail "bench train --profile: no table in the log"
# A trained run's encoding speed per tower (a one-epoch tiny run).
"$shopclip" prep "${tiny[@]}" > /dev/null 2>&1 || fail "prep failed"
"$shopclip" train "${tiny[@]}" --set "run.dir=$work/run" --set train.epochs=1 > "$work/run.log" 2>&1 \
  || { cat "$work/run.log"; fail "the tiny run failed"; }
"$shopclip" bench encode --run "$work/run" --batch 16 --seconds 0.2 > "$work/encode.json" 2> /dev/null
has_keys "$work/encode.json" encode image_parameters text_parameters image_mflop query_mflop \
  images_per_s queries_per_s single_query_ms matmul_gflops
expect_error "missing; is $work/nothing a shopclip run folder?" "$shopclip" bench encode \
  --run "$work/nothing"
"$shopclip" bench loss --global-batch 64 --dim 16 --mode full > "$work/loss.json" 2> /dev/null
has_keys "$work/loss.json" loss step_ms global_batch
"$shopclip" bench search --pool 2000 --queries 50 --dim 16 --seconds 0.1 > "$work/search.json" 2> /dev/null
has_keys "$work/search.json" search seconds pool
"$shopclip" bench prep "${tiny[@]}" --split valid --decode-images 50 --seconds 0.2 \
  > "$work/prep.json" 2> /dev/null
has_keys "$work/prep.json" prep prep_images_per_s raw_decode_resize_images_per_s peak_rss_mib
for what in stats check; do
  "$shopclip" bench "$what" --data "$data" --decode-images 50 --seconds 0.2 > "$work/$what.json" 2> /dev/null
  has_keys "$work/$what.json" "$what" images_per_s raw_decode_images_per_s peak_rss_mib
done
# A Chinese-CLIP model of a few layers, in the configs' own format.
echo '{"embed_dim": 24, "image_resolution": 32, "vision_layers": 2, "vision_width": 64,
  "vision_patch_size": 8}' > "$work/vision.json"
echo '{"vocab_size": 120, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
  "text_hidden_dropout_prob": 0.1, "text_hidden_size": 32, "text_initializer_range": 0.02,
  "text_intermediate_size": 64, "text_max_position_embeddings": 40,
  "text_num_attention_heads": 4, "text_num_hidden_layers": 2, "text_type_vocab_size": 2}' \
  > "$work/text.json"
"$shopclip" bench cnclip --vision-config "$work/vision.json" \
  --text-config "$work/text.json" --batch 2 --context-length 8 \
  --seconds 0.1 > "$work/cnclip.json" 2> /dev/null
has_keys "$work/cnclip.json" cnclip forward_s_per_sample train_s_per_sample train_peak_rss_mib
grep -q '"device":"cpu","amp":false' "$work/cnclip.json" || fail "bench cnclip does not say its device"
# bf16 autocast is a GPU setting; a CPU-only LibTorch refuses cuda by name.
expect_error "bench cnclip --amp needs --device cuda" "$shopclip" bench cnclip \
  --vision-config "$work/vision.json" --text-config "$work/text.json" --amp
if ! "$shopclip" version | grep -q '"libtorch_with_cuda": true'; then
  expect_error "run.device is cuda, but this LibTorch has no CUDA" "$shopclip" bench cnclip \
    --vision-config "$work/vision.json" --text-config "$work/text.json" --device cuda
fi

echo "== options belong to their benchmark"
if "$shopclip" bench matmul --pool 10 > "$work/wrong.out" 2>&1; then
  fail "bench matmul accepted search's --pool"
fi
grep -q -- "--pool" "$work/wrong.out" || { cat "$work/wrong.out"; fail "the refusal does not name --pool"; }

echo "== one-process commands refuse to run under mpirun"
if mpirun -np 2 --oversubscribe "$shopclip" bench matmul --seconds 0.1 > "$work/refused.log" 2>&1; then
  fail "bench matmul ran as 2 processes"
fi
grep -q "'bench matmul' runs as one process" "$work/refused.log" \
  || { cat "$work/refused.log"; fail "no message naming the command"; }
grep -q "as 2 processes only: prep, train, eval, distill cache, ensemble, rerank, soup, index build, bench train, bench loss" "$work/refused.log" \
  || { cat "$work/refused.log"; fail "the message does not list the multi-process commands"; }

echo "== bench train and bench loss as 2 ranks"
mpirun -np 2 --oversubscribe "$shopclip" bench train "${tiny[@]}" --seconds 0.5 \
  > "$work/train2.json" 2> "$work/train2.log" || { cat "$work/train2.log"; fail "bench train -np 2"; }
has_keys "$work/train2.json" train samples_per_s
$python -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); assert r["ranks"]==2, r' \
  "$work/train2.json" || fail "bench train under mpirun -np 2 did not report 2 ranks"
mpirun -np 2 --oversubscribe "$shopclip" bench loss --global-batch 64 --dim 16 \
  > "$work/loss2.json" 2> "$work/loss2.log" || { cat "$work/loss2.log"; fail "bench loss -np 2"; }
has_keys "$work/loss2.json" loss step_ms
echo "commands e2e: OK"
