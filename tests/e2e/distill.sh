#!/usr/bin/env bash
# Knowledge distillation end to end at the tiny scale, with the real binary:
#   a teacher (64 dimensions) trained, then `shopclip distill cache` in one process and under
#   mpirun with 2 ranks and smaller parts: the same embeddings for every image and query id, read
#   with h5py (float16, unit norm, the teacher's hash in every part), each with the teacher's
#   saved image index (one shard per rank);
#   a cache interrupted (a part removed) is completed, writing only that part;
#   a 32-dimension student trained with every distillation term logs each of them, records the
#   projection width it resolved, and its best checkpoint evaluates like any other;
#   a student with an online teacher (distill.online, no cache) trains on 2 ranks;
#   augmented views (distill.views 2) cached on 2 ranks, one set of parts per view, read by a
#   student on 2 ranks; a student that augments otherwise is refused naming view_recipe;
#   a cache of another teacher is refused naming the field.
# Usage: distill.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-distill-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "DISTILL E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3  # Debian's, with python3-h5py
export PYTHONDONTWRITEBYTECODE=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

data=$work/data
common=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data")
"$shopclip" data synth --scale tiny --out "$data" --seed 4 >/dev/null
"$shopclip" prep "${common[@]}" >/dev/null 2>&1

echo "== teacher"
"$shopclip" train "${common[@]}" --set "run.dir=$work/teacher" --set model.embed_dim=64 \
  --set model.text.width=64 --set model.text.mlp=128 --set train.epochs=2 > "$work/teacher.log" 2>&1 \
  || { tail -20 "$work/teacher.log"; fail "the teacher did not train"; }

echo "== cache: one process, then 2 ranks"
"$shopclip" distill cache "${common[@]}" --teacher "$work/teacher" --out "$work/cache-1" \
  > "$work/cache-1.log" 2>&1 || { cat "$work/cache-1.log"; fail "distill cache failed"; }
mpirun -np 2 --oversubscribe "$shopclip" distill cache "${common[@]}" --teacher "$work/teacher" \
  --out "$work/cache-2" --chunk-rows 100 > "$work/cache-2.log" 2>&1 \
  || { cat "$work/cache-2.log"; fail "distill cache under mpirun failed"; }
$python - "$work/cache-1" "$work/cache-2" <<'PY' || fail "the two caches differ"
import json, sys
import h5py
import numpy as np

def read(folder):
    manifest = json.load(open(f"{folder}/manifest.json"))
    rows = {"images": {}, "queries": {}}
    for part in manifest["parts"]:
        with h5py.File(f"{folder}/{part['file']}", "r") as f:
            assert f.attrs["format"] == "shopclip-embeddings", part
            assert f.attrs["teacher_xxh64"] == manifest["teacher"]["xxh64"], part
            e = f["embeddings"][...]
            assert e.dtype == np.float16, e.dtype
            assert e.shape == (part["rows"], manifest["teacher"]["dim"]), e.shape
            norms = np.linalg.norm(e.astype(np.float32), axis=1)
            assert np.all(np.abs(norms - 1) < 2e-3), norms.min()
            for i, row in zip(f["ids"][...], e):
                rows[part["kind"]][int(i)] = row.astype(np.float32)
    return manifest, rows

m1, a = read(sys.argv[1])
m2, b = read(sys.argv[2])
assert m1["teacher"] == m2["teacher"], (m1["teacher"], m2["teacher"])
assert m1["teacher"]["dim"] == 64
assert len(m2["parts"]) > len(m1["parts"]), "the 2-rank cache should have more, smaller parts"
for kind in ("images", "queries"):
    assert a[kind].keys() == b[kind].keys(), kind
    assert len(a[kind]) == m1[kind]["count"], kind
    worst = max(float(np.abs(a[kind][k] - b[kind][k]).max()) for k in a[kind])
    assert worst < 2e-3, (kind, worst)
print("caches equal:", {k: len(v) for k, v in a.items()})
PY
grep -q "wrote" "$work/cache-2.log" || fail "no rank logged its parts"
# Each cache holds the teacher's image index, one shard per rank of the job that made it.
$python - "$work/cache-1" "$work/cache-2" <<'PY' || fail "the teacher's saved index"
import json, sys
for folder, shards in ((sys.argv[1], 1), (sys.argv[2], 2)):
    cache = json.load(open(f"{folder}/manifest.json"))
    index = json.load(open(f"{folder}/index/manifest.json"))
    assert index["model"]["xxh64"] == cache["teacher"]["xxh64"], index
    assert index["count"] == cache["images"]["count"] and index["factory"] == "Flat", index
    assert len(index["shards"]) == shards, index
PY

echo "== an interrupted cache is completed"
rm "$work/cache-2/queries-00001.h5" "$work/cache-2/manifest.json"
"$shopclip" distill cache "${common[@]}" --teacher "$work/teacher" --out "$work/cache-2" \
  --chunk-rows 100 > "$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "resume failed"; }
grep -q "wrote 1 part(s)" "$work/resume.log" || { cat "$work/resume.log"; fail "resume rewrote more than the lost part"; }
[ -f "$work/cache-2/manifest.json" ] || fail "no manifest after the resumed cache"

echo "== a student with every term"
"$shopclip" train "${common[@]}" --set "run.dir=$work/student" --set train.epochs=2 \
  --set "distill.teacher=$work/teacher" --set "distill.teacher_cache=$work/cache-1" \
  --set distill.feature_weight=1 --set distill.contrastive_weight=0.5 \
  --set distill.relational_weight=0.5 > "$work/student.log" 2>&1 \
  || { tail -20 "$work/student.log"; fail "the student did not train"; }
grep -q "distill: teacher" "$work/student.log" || fail "the run did not log its teacher"
grep -q "distill_dim: 64" "$work/student/config.yaml" || fail "config.yaml lacks the resolved projection width"
$python - "$work/student/metrics.jsonl" <<'PY' || fail "metrics rows lack a distillation term"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in rows if r["type"] == "train"]
assert train, "no train rows"
for term in ("distill_feature", "distill_contrastive", "distill_relational"):
    assert all(term in r for r in train), term
PY
"$shopclip" eval "${common[@]}" --run "$work/student" > "$work/eval.log" 2>&1 \
  || { cat "$work/eval.log"; fail "the student's checkpoint did not evaluate"; }

echo "== an online teacher on 2 ranks, no cache"
mpirun -np 2 --oversubscribe "$shopclip" train "${common[@]}" --set "run.dir=$work/online" \
  --set train.epochs=1 --set "distill.teacher=$work/teacher" --set distill.online=true \
  --set distill.feature_weight=1 --set distill.relational_weight=0.5 > "$work/online.log" 2>&1 \
  || { tail -20 "$work/online.log"; fail "the online student did not train"; }
grep -q "from the step (online)" "$work/online.log" || fail "the online run did not say where its teacher rows come from"
grep -q '"distill_feature"' "$work/online/metrics.jsonl" || fail "no distillation term in the online run's metrics"

echo "== augmented views: cached on 2 ranks, a student on 2 ranks reads them"
views=(--set distill.views=2 --set train.image_augment.hflip=0.5 --set train.max_shift=2)
mpirun -np 2 --oversubscribe "$shopclip" distill cache "${common[@]}" "${views[@]}" \
  --teacher "$work/teacher" --out "$work/cache-views" --chunk-rows 150 > "$work/cache-views.log" 2>&1 \
  || { cat "$work/cache-views.log"; fail "distill cache with views failed"; }
$python - "$work/cache-views" <<'PY' || fail "the views cache"
import json, sys
m = json.load(open(f"{sys.argv[1]}/manifest.json"))
assert m["views"] == 2 and "hflip=0.5" in m["view_recipe"]["augmentations"], m
views = sorted({p["view"] for p in m["parts"] if p["kind"] == "images"})
assert views == [0, 1], views
PY
mpirun -np 2 --oversubscribe "$shopclip" train "${common[@]}" "${views[@]}" \
  --set "run.dir=$work/views" --set train.epochs=1 --set "distill.teacher_cache=$work/cache-views" \
  --set distill.feature_weight=1 > "$work/views.log" 2>&1 \
  || { tail -20 "$work/views.log"; fail "the student did not train from stored views"; }
grep -q '"distill_feature"' "$work/views/metrics.jsonl" || fail "no distillation term in the views run"
if "$shopclip" train "${common[@]}" --set distill.views=2 --set "run.dir=$work/views-refused" \
  --set "distill.teacher_cache=$work/cache-views" --set distill.feature_weight=1 \
  > "$work/views-refused.log" 2>&1; then
  fail "a student augmenting otherwise than the cached views was accepted"
fi
grep -q "view_recipe.augmentations" "$work/views-refused.log" \
  || { cat "$work/views-refused.log"; fail "the refusal does not name view_recipe.augmentations"; }

echo "== a cache of another teacher is refused"
"$shopclip" train "${common[@]}" --set "run.dir=$work/teacher-2" --set train.epochs=1 \
  > /dev/null 2>&1 || fail "the second teacher did not train"
if "$shopclip" train "${common[@]}" --set "run.dir=$work/refused" \
  --set "distill.teacher=$work/teacher-2" --set "distill.teacher_cache=$work/cache-1" \
  --set distill.feature_weight=1 > "$work/refused.log" 2>&1; then
  fail "a cache of another teacher was accepted"
fi
grep -q "teacher.xxh64" "$work/refused.log" || { cat "$work/refused.log"; fail "the refusal does not name teacher.xxh64"; }
echo "distill e2e: OK"
