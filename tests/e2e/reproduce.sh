#!/usr/bin/env bash
# provenance.json and `shopclip reproduce` end to end on the tiny dataset: a training run's record
# has every field (command, times, status, git state of a dirty tree with its diff saved, build,
# libraries, machine, processes, seeds, resolved config and hash, input files with sizes and
# hashes); the hash cache is keyed by path, size and modification time; a failed run is recorded
# as failed with its error; `reproduce` gives bit-identical weights for a 1-process and a 2-rank
# run; a changed data file is refused, naming it.
# Usage: reproduce.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-reproduce-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "REPRODUCE E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export SHOPCLIP_CACHE_DIR=$work/cache
data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 > /dev/null 2>&1
tiny=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data" --set train.epochs=1
  --set run.threads=1)
"$shopclip" prep "${tiny[@]}" > /dev/null 2>&1

# A source tree of its own, committed and then changed: the record must call it dirty and keep
# the diff (the binary's own tree may be clean or not; SHOPCLIP_SOURCE_DIR points elsewhere).
tree=$work/tree
mkdir -p "$tree" && git -C "$tree" init -q -b main
echo "first" > "$tree/file.txt"
git -C "$tree" add file.txt
git -C "$tree" -c user.email=t@t -c user.name=t commit -q -m one
echo "uncommitted change" >> "$tree/file.txt"
export SHOPCLIP_SOURCE_DIR=$tree

echo "== provenance.json of a training run"
run=$work/run
"$shopclip" train "${tiny[@]}" --set "run.dir=$run" > "$work/train.log" 2>&1 \
  || { tail -n 20 "$work/train.log"; fail "training failed"; }
$python - "$run" "$tree" "$data" <<'PY' || fail "provenance.json is incomplete or wrong"
import json, os, subprocess, sys
run, tree, data = sys.argv[1:]
r = json.load(open(f"{run}/provenance.json"))
def check(condition, what):
    if not condition:
        sys.exit(f"provenance.json: {what}")
check(r["format"] == "shopclip-provenance" and r["format_version"] == 1, "format")
check(r["command"][1:3] == ["train", "--config"], f"command {r['command']}")
check(r["working_directory"] == os.getcwd(), "working directory")
check(r["started"] <= r["ended"] and r["started"].endswith("Z"), "times")
check(r["status"] == "finished" and r["exit_status"] == 0 and r["error"] is None, "status")
head = subprocess.check_output(["git", "-C", tree, "rev-parse", "HEAD"], text=True).strip()
check(r["git"]["commit"] == head and r["git"]["branch"] == "main", f"git {r['git']}")
check(r["git"]["dirty"] is True and r["git"]["diff"] == "provenance.diff", "dirty flag")
check("+uncommitted change" in open(f"{run}/provenance.diff").read(), "the saved diff")
for key in ("compiler", "build_type", "flags", "cmake_options"):
    check(key in r["build"], f"build.{key}")
for key in ("libtorch_headers", "faiss", "hdf5", "mpi", "blas_loaded"):
    check(r["libraries"].get(key), f"libraries.{key}")
for key in ("host", "cpu", "cores", "memory_gib"):
    check(key in r["machine"], f"machine.{key}")
p = r["processes"]
check(p["launcher"].startswith("single process") and p["world_size"] == 1 and p["ranks_per_node"] == 1,
      f"processes {p}")
check(p["threads_per_rank"] == 1 and len(p["hosts"]) == 1 and p["cuda_devices"] == 0, "threads, hosts, GPUs")
check(r["seeds"]["run.seed"] == 7 and "run.seed" in r["seeds"]["derivation"], "seeds")
check(r["config"] == open(f"{run}/config.yaml").read(), "the resolved config")
check(len(r["config_xxh64"]) == 16, "config hash")
roles = {i["role"]: i for i in r["inputs"]}
for role in ("train images", "train queries", "train prep manifest", "valid images",
             "valid queries", "valid prep manifest"):
    check(role in roles, f"input {role}")
    check(roles[role]["size"] == os.path.getsize(roles[role]["path"]), f"size of {role}")
    check(len(roles[role]["xxh64"]) == 16, f"hash of {role}")
check(roles["train images"]["path"] == os.path.abspath(f"{data}/train_imgs.tsv"), "absolute paths")
# The hash is XXH64 as the xxhash package's own tool computes it (an independent implementation).
line = subprocess.check_output(["xxhsum", "-H1", roles["train images"]["path"]], text=True)
check(line.split()[0] == roles["train images"]["xxh64"], f"XXH64: xxhsum says {line.split()[0]}")
PY

echo "== an evaluation has its own record"
"$shopclip" eval --run "$run" --split valid > /dev/null 2>&1 || fail "eval failed"
$python - "$run/eval/provenance_valid.json" "$run" <<'PY' || fail "the evaluation's record"
import json, os, sys
r = json.load(open(sys.argv[1]))
assert r["command"][1] == "eval" and r["status"] == "finished", r["command"]
roles = {i["role"]: i["path"] for i in r["inputs"]}
assert roles["checkpoint"] == os.path.abspath(f"{sys.argv[2]}/checkpoints/best.pt"), roles
assert "valid queries" in roles and "valid prep manifest" in roles, roles
PY
grep -q '"command"' "$run/provenance.json" && grep -q '"train"' "$run/provenance.json" \
  || fail "the evaluation replaced the training run's record"
# Into a new folder (no eval/ yet), from a dirty tree: the record and its diff go there.
"$shopclip" eval "${tiny[@]}" --set "run.dir=$work/eval-only" \
  --checkpoint "$run/checkpoints/best.pt" --split valid > /dev/null 2> "$work/eval-only.log" \
  || { cat "$work/eval-only.log"; fail "eval into a new folder failed"; }
[ -s "$work/eval-only/eval/provenance_valid.diff" ] || fail "no diff beside the eval record"

echo "== hashes are cached by path, size and modification time"
images=$data/train_imgs.tsv
$python - "$SHOPCLIP_CACHE_DIR/file_hashes.json" "$images" <<'PY'
import json, os, sys
cache_path, images = sys.argv[1], os.path.abspath(sys.argv[2])
cache = json.load(open(cache_path))
assert cache[images]["size"] == os.path.getsize(images), cache[images]
cache[images]["xxh64"] = "00000000deadbeef"  # what a second run must take from the cache
json.dump(cache, open(cache_path, "w"))
PY
"$shopclip" train "${tiny[@]}" --set "run.dir=$work/cached" --set train.epochs=1 > /dev/null 2>&1
grep -q '"xxh64": "00000000deadbeef"' "$work/cached/provenance.json" \
  || fail "the second run hashed the file again instead of using the cache"
touch "$images"  # same bytes, new modification time: hashed again
"$shopclip" train "${tiny[@]}" --set "run.dir=$work/rehashed" > /dev/null 2>&1
grep -q '"xxh64": "00000000deadbeef"' "$work/rehashed/provenance.json" \
  && fail "a file with a new modification time kept its cached hash"
echo "(cache used for an unchanged file, refreshed after touch)"

echo "== a failed run is recorded as failed"
if "$shopclip" train "${tiny[@]}" --set "run.dir=$work/failed" --inject-failure 0:3 \
  > "$work/failed.log" 2>&1; then
  fail "the injected failure did not fail the run"
fi
$python - "$work/failed/provenance.json" <<'PY' || fail "the failed run's record"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "failed" and r["exit_status"] == 1 and "step 3" in r["error"], r
PY

echo "== reproduce: one process, bit-identical weights"
"$shopclip" reproduce "$run" --out "$work/again" > "$work/again.json" 2> "$work/again.log" \
  || { cat "$work/again.log"; fail "reproduce failed"; }
$python - "$work/again/reproduction.json" <<'PY' || fail "the reproduction differs"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["final_weights"]["bit_identical"] is True, r["final_weights"]
assert all(m["difference"] == 0 for m in r["valid_metrics"].values()), r["valid_metrics"]
assert r["inputs_checked"] >= 6
assert any("uncommitted" in note for note in r["code_notes"]), r["code_notes"]
PY

echo "== reproduce: 2 ranks under mpirun, bit-identical weights"
run2=$work/run2
mpirun -np 2 --oversubscribe "$shopclip" train "${tiny[@]}" --set "run.dir=$run2" \
  > "$work/train2.log" 2>&1 || { tail -n 20 "$work/train2.log"; fail "2-rank training failed"; }
grep -q '"world_size": 2' "$run2/provenance.json" || fail "the 2-rank record's world size"
grep -q '"launcher": "mpirun' "$run2/provenance.json" || fail "the 2-rank record's launcher"
MPIRUN_ARGS=--oversubscribe "$shopclip" reproduce "$run2" --out "$work/again2" > /dev/null \
  2> "$work/again2.log" || { cat "$work/again2.log"; fail "reproduce of the 2-rank run failed"; }
grep -q '"bit_identical": true' "$work/again2/reproduction.json" \
  || { cat "$work/again2/reproduction.json"; fail "the 2-rank reproduction differs"; }

echo "== a changed data file is refused, named"
echo '{"text_id": 999999, "text": "新的 查询", "image_ids": [1]}' >> "$data/valid_texts.jsonl"
if "$shopclip" reproduce "$run" --out "$work/refused" 2> "$work/refused.log"; then
  fail "reproduce accepted a changed data file"
fi
grep -q "valid_texts.jsonl (valid queries) has .* bytes, the run read" "$work/refused.log" \
  || { cat "$work/refused.log"; fail "the refusal does not name the changed file"; }
[ ! -e "$work/refused/checkpoints" ] || fail "the refused reproduction trained"
echo "reproduce e2e: OK"
