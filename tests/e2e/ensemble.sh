#!/usr/bin/env bash
# Ensembles, training-free re-ranking and soups end to end at the tiny scale, with the real binary:
#   three runs (two seeds of one architecture, one of another width) fused by every method; each
#   output has 10 distinct ids for every query, scores that the independent scorer
#   (tests/tools/muge_score.py) agrees with, and is accepted by `report` and `compare`;
#   weights tuned on valid are recorded and applied unchanged to test (a re-run on valid with
#   them reproduces the recorded tuning score; --weights-from reproduces the test predictions);
#   tuning on the evaluated split is refused; the YAML form equals the flags; a bad key is named
#   with its line; 2 ranks under mpirun give the single process's scores;
#   rerank qb-norm: the stage-1 ceiling is recorded and bounds R@10, stage 1 of two runs is their
#   feature ensemble; dual-softmax is refused without --transductive;
#   rerank learned: a reranker trained on top of a run (model.init, towers frozen, mined
#   negatives) re-scores test with lambda tuned on valid (official scores, stage-1 ceiling,
#   latency recorded), its pool-token cache is reused the second time, 2 ranks give one
#   process's scores, and a run without a reranker is refused;
#   soups: a uniform soup of a checkpoint with itself is that checkpoint (weights-diff 0); a greedy
#   soup writes a checkpoint that `eval` takes and keeps only ingredients that did not hurt.
# Usage: ensemble.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-ensemble-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "ENSEMBLE E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
json_get() { $python -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
independent_score() {
  $python "$source_dir/tests/tools/muge_score.py" --ref "$1" --pred "$2" --expect "$3" >/dev/null \
    || fail "the independent scorer disagrees with $3 on $2"
}
# Every query of the split has exactly 10 distinct ids.
check_predictions() {
  $python - "$1" "$2" <<'PY' || fail "bad predictions in $2"
import json, sys
def query_id(row):
    return row["text_id"] if "text_id" in row else row["query_id"]
queries = [query_id(json.loads(line)) for line in open(sys.argv[1])]
preds = {}
for line in open(sys.argv[2]):
    row = json.loads(line)
    ids = row["image_ids"] if "image_ids" in row else row["item_ids"]
    assert len(ids) == 10 and len(set(ids)) == 10, row
    preds[query_id(row)] = ids
assert sorted(preds) == sorted(queries), "not one prediction per query"
PY
}

data=$work/data
common=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data")
"$shopclip" data synth --scale tiny --out "$data" --seed 5 >/dev/null
"$shopclip" prep "${common[@]}" >/dev/null 2>&1

echo "== three members"
train() {
  "$shopclip" train "${common[@]}" --set "run.dir=$work/$1" --set train.epochs=2 "${@:2}" \
    > "$work/$1.log" 2>&1 || { tail -20 "$work/$1.log"; fail "run $1 did not train"; }
}
train a --set run.seed=1
train b --set run.seed=2
train c --set run.seed=3 --set model.embed_dim=48
for run in a b c; do
  "$shopclip" eval --run "$work/$run" --split valid >/dev/null 2>&1 || fail "eval $run"
done

echo "== every fusion method on valid"
for method in feature score rrf borda; do
  out=$work/ens-$method
  "$shopclip" ensemble --run "$work/a" --run "$work/b" --run "$work/c" --method "$method" \
    --split valid --out "$out" > "$out.log" 2>&1 || { cat "$out.log"; fail "ensemble $method"; }
  check_predictions "$data/valid_texts.jsonl" "$out/predictions/valid.jsonl"
  independent_score "$data/valid_texts.jsonl" "$out/predictions/valid.jsonl" "$out/eval/valid.json"
  [ "$(json_get "$out/ensemble.json" '["method"]')" = "$method" ] || fail "$method: method not recorded"
  [ "$(json_get "$out/ensemble.json" '["weights_source"]')" = "equal" ] || fail "$method: weights"
  # Every member's own score is recorded beside the ensemble's.
  $python - "$out/ensemble.json" "$work" <<'PY' || fail "$method: member scores"
import json, sys
record = json.load(open(sys.argv[1]))
for member, run in zip(record["members"], ("a", "b", "c")):
    own = json.load(open(f"{sys.argv[2]}/{run}/eval/valid.json"))["scoreJson"]["mean_recall"]
    assert abs(member["scores"]["mean_recall"] - own) < 1e-9, (run, member["scores"], own)
if record["method"] != "feature":
    # The stage-1 ceiling: the union of the lists holds at least what the top 10 holds.
    assert record["stage1"]["recall"] >= record["scores"]["r10"] - 1e-9, record["stage1"]
    assert record["stage1"]["list_length"] == 100, record["stage1"]
PY
done
"$shopclip" report "$work/ens-rrf" --split valid >/dev/null 2>&1 || fail "report refused an ensemble"
"$shopclip" compare "$work/a" "$work/ens-rrf" --split valid --out "$work/cmp/a-vs-rrf.html" \
  >/dev/null 2>&1 || fail "compare refused an ensemble"
[ -f "$work/cmp/a-vs-rrf.json" ] || fail "compare wrote no JSON"

echo "== weights tuned on valid, applied unchanged to test"
"$shopclip" ensemble --run "$work/a" --run "$work/c" --method score --tune valid --split test \
  --ref "$data/answers/test_texts.jsonl" --out "$work/tuned" > "$work/tuned.log" 2>&1 \
  || { cat "$work/tuned.log"; fail "tuned ensemble"; }
check_predictions "$data/test_texts.jsonl" "$work/tuned/predictions/test.jsonl"
# --ref: the test split scored with its held-back answers.
independent_score "$data/answers/test_texts.jsonl" "$work/tuned/predictions/test.jsonl" \
  "$work/tuned/eval/test.json"
[ "$(json_get "$work/tuned/ensemble.json" '["tuning"]["split"]')" = valid ] || fail "tuning split"
[ "$(json_get "$work/tuned/ensemble.json" '["tuning"]["evaluated"]')" = 12 ] || fail "grid size"
weights=$($python -c "import json,sys; print(','.join(repr(m['weight']) for m in json.load(open(sys.argv[1]))['members']))" "$work/tuned/ensemble.json")
"$shopclip" ensemble --run "$work/a" --run "$work/c" --method score --weights "$weights" \
  --split valid --out "$work/retuned" >/dev/null 2>&1 || fail "ensemble with given weights"
$python - "$work/tuned/ensemble.json" "$work/retuned/eval/valid.json" <<'PY' || fail "tuning score not reproduced"
import json, sys
tuned = json.load(open(sys.argv[1]))["tuning"]["mean_recall"]
again = json.load(open(sys.argv[2]))["scoreJson"]["mean_recall"]
assert abs(tuned - again) < 1e-9, (tuned, again)
PY
"$shopclip" ensemble --run "$work/a" --run "$work/c" --method score \
  --weights-from "$work/tuned/ensemble.json" --split test --out "$work/applied" >/dev/null 2>&1 \
  || fail "--weights-from"
cmp -s "$work/tuned/predictions/test.jsonl" "$work/applied/predictions/test.jsonl" \
  || fail "--weights-from gave other test predictions than the tuned run"
if "$shopclip" ensemble --run "$work/a" --run "$work/c" --tune valid --split valid \
  --out "$work/leak" > "$work/leak.log" 2>&1; then
  fail "tuning on the evaluated split was accepted"
fi
grep -q "optimistic" "$work/leak.log" || { cat "$work/leak.log"; fail "no reason for the refusal"; }
if "$shopclip" ensemble --run "$work/a" --run "$work/b" --weights-from "$work/tuned/ensemble.json" \
  --split valid --out "$work/wrong" > "$work/wrong.log" 2>&1; then
  fail "weights of other members were accepted"
fi
grep -q "member 2" "$work/wrong.log" || { cat "$work/wrong.log"; fail "the refusal does not name the member"; }

echo "== the YAML form"
cat > "$work/ensemble.yaml" <<EOF
members:
  - run: $work/a
    weight: 2
  - run: $work/b
    weight: 1
method: rrf
split: valid
out: $work/from-file
EOF
"$shopclip" ensemble --file "$work/ensemble.yaml" >/dev/null 2>&1 || fail "ensemble --file"
"$shopclip" ensemble --run "$work/a" --run "$work/b" --weights 2,1 --method rrf --split valid \
  --out "$work/from-flags" >/dev/null 2>&1 || fail "ensemble with flags"
cmp -s "$work/from-file/predictions/valid.jsonl" "$work/from-flags/predictions/valid.jsonl" \
  || fail "the YAML form and the flags disagree"
printf 'members:\n  - run: %s\n  - run: %s\nmethod: rrf\nweigths: [1, 2]\n' "$work/a" "$work/b" \
  > "$work/typo.yaml"
if "$shopclip" ensemble --file "$work/typo.yaml" --out "$work/typo" > "$work/typo.log" 2>&1; then
  fail "an unknown key was accepted"
fi
grep -q "typo.yaml:5: 'weigths'" "$work/typo.log" || { cat "$work/typo.log"; fail "the key's line is not named"; }

echo "== 2 ranks"
mpirun -np 2 --oversubscribe "$shopclip" ensemble --run "$work/a" --run "$work/c" --method feature \
  --split valid --out "$work/ens-np2" > "$work/np2.log" 2>&1 || { cat "$work/np2.log"; fail "mpirun ensemble"; }
"$shopclip" ensemble --run "$work/a" --run "$work/c" --method feature --split valid \
  --out "$work/ens-np1" >/dev/null 2>&1 || fail "ensemble a+c"
cmp -s "$work/ens-np1/eval/valid.json" "$work/ens-np2/eval/valid.json" \
  || fail "2 ranks scored otherwise than one process"

echo "== rerank"
"$shopclip" rerank --run "$work/a" --method qb-norm --split valid --out "$work/qb" \
  > "$work/qb.log" 2>&1 || { cat "$work/qb.log"; fail "rerank qb-norm"; }
check_predictions "$data/valid_texts.jsonl" "$work/qb/predictions/valid.jsonl"
independent_score "$data/valid_texts.jsonl" "$work/qb/predictions/valid.jsonl" "$work/qb/eval/valid.json"
$python - "$work/qb/rerank.json" "$work/a/eval/valid.json" <<'PY' || fail "rerank record"
import json, sys
record = json.load(open(sys.argv[1]))
plain = json.load(open(sys.argv[2]))["scoreJson"]
assert record["bank"]["split"] == "train" and record["bank"]["queries"] > 0, record["bank"]
assert record["stage1"]["recall"] >= record["scores"]["r10"] - 1e-9, record
assert abs(record["stage1"]["scores"]["mean_recall"] - plain["mean_recall"]) < 1e-9, record
assert 0 <= record["rescored_queries"] <= record["scores"]["queries"], record
assert record["transductive"] is False
PY
"$shopclip" rerank --run "$work/a" --method qb-norm --tune valid --split test --out "$work/qb-tuned" \
  >/dev/null 2>&1 || fail "rerank --tune"
# Stage 1 of two runs fused by features is the feature ensemble of the same runs.
"$shopclip" rerank --run "$work/a" --run "$work/c" --method qb-norm --split valid \
  --out "$work/qb-ens" >/dev/null 2>&1 || fail "rerank over an ensemble"
$python - "$work/qb-ens/rerank.json" "$work/ens-np1/eval/valid.json" <<'PY' || fail "rerank's fused stage 1 is not the feature ensemble"
import json, sys
stage1 = json.load(open(sys.argv[1]))["stage1"]["scores"]["mean_recall"]
ensemble = json.load(open(sys.argv[2]))["scoreJson"]["mean_recall"]
assert abs(stage1 - ensemble) < 1e-9, (stage1, ensemble)
PY
[ "$(json_get "$work/qb-tuned/rerank.json" '["tuning"]["split"]')" = valid ] || fail "beta tuning not recorded"
if "$shopclip" rerank --run "$work/a" --method dual-softmax --split valid --out "$work/ds" \
  > "$work/ds.log" 2>&1; then
  fail "dual-softmax ran without --transductive"
fi
grep -q "transductive" "$work/ds.log" || fail "the dual-softmax refusal does not say why"
"$shopclip" rerank --run "$work/a" --method dual-softmax --transductive --split valid \
  --out "$work/ds" >/dev/null 2>&1 || fail "dual-softmax --transductive"
independent_score "$data/valid_texts.jsonl" "$work/ds/predictions/valid.jsonl" "$work/ds/eval/valid.json"

echo "== learned reranker"
# Trained on top of run a: its weights as model.init, both towers frozen (only the reranker and
# the logit scale learn), stage-1 hard negatives mined before the first epoch.
train r --set run.seed=1 --set "model.init=$work/a/checkpoints/best.pt" \
  --set model.reranker.layers=1 --set model.reranker.width=32 --set model.reranker.heads=2 \
  --set model.reranker.mlp=64 --set model.reranker.image_tokens=4 --set train.rerank_weight=1 \
  --set train.freeze=both --set train.mine_every=1
grep -q "initial weights from $work/a/checkpoints/best.pt; .* tensors it lacks start fresh (in reranker)" \
  "$work/r.log" || { cat "$work/r.log"; fail "model.init not reported"; }
grep -q "mining before epoch 1" "$work/r.log" || fail "a run from trained weights did not mine before epoch 1"
$python - "$work/r/metrics.jsonl" <<'PY' || fail "the reranker's loss is not in the metrics"
import json, math, sys
values = [row["rerank"] for row in map(json.loads, open(sys.argv[1])) if "rerank" in row]
assert values and all(math.isfinite(v) and v > 0 for v in values), values
PY
# Frozen towers: stage 1 of r is a's retrieval.
"$shopclip" rerank --run "$work/r" --method learned --tune valid --split test \
  --ref "$data/answers/test_texts.jsonl" --candidates 20 --out "$work/learned" \
  > "$work/learned.log" 2>&1 || { cat "$work/learned.log"; fail "rerank learned"; }
check_predictions "$data/test_texts.jsonl" "$work/learned/predictions/test.jsonl"
independent_score "$data/answers/test_texts.jsonl" "$work/learned/predictions/test.jsonl" \
  "$work/learned/eval/test.json"
"$shopclip" eval --run "$work/a" --split test >/dev/null 2>&1 || fail "eval a on test"
$python - "$work/learned/rerank.json" "$work/a" <<'PY' || fail "learned rerank record"
import json, sys
record = json.load(open(sys.argv[1]))
assert record["method"] == "learned" and record["transductive"] is False, record
assert record["tuning"]["split"] == "valid" and record["lambda"] in [t["lambda"] for t in record["tuning"]["tried"]], record
assert record["stage1"]["candidates"] == 20 and record["stage1"]["recall"] >= record["scores"]["r10"] - 1e-9, record
cache = record["reranker"]["token_cache"]
assert cache["reused"] is False and cache["tokens"] == 4 and cache["width"] == 32, cache
assert record["timing"]["rescore_ms_per_query"] > 0, record["timing"]
PY
ls "$work/r/token_cache/valid.h5" "$work/r/token_cache/test.h5" >/dev/null || fail "no token cache files"
# The second time the pool's tokens come from the cache, and nothing else changes.
"$shopclip" rerank --run "$work/r" --method learned --lambda 0.1 --split valid --out "$work/learned-1" \
  >/dev/null 2>&1 || fail "rerank learned, lambda given"
[ "$(json_get "$work/learned-1/rerank.json" '["reranker"]["token_cache"]["reused"]')" = True ] \
  || fail "the token cache was not reused"
independent_score "$data/valid_texts.jsonl" "$work/learned-1/predictions/valid.jsonl" \
  "$work/learned-1/eval/valid.json"
# 2 ranks encode the pool's tokens in two slices: the same scores as one process.
rm -rf "$work/r/token_cache"
mpirun -np 2 --oversubscribe "$shopclip" rerank --run "$work/r" --method learned --lambda 0.1 \
  --split valid --out "$work/learned-np2" > "$work/learned-np2.log" 2>&1 \
  || { cat "$work/learned-np2.log"; fail "mpirun rerank learned"; }
[ "$(json_get "$work/learned-np2/rerank.json" '["reranker"]["token_cache"]["reused"]')" = False ] \
  || fail "2 ranks reused a cache that was removed"
cmp -s "$work/learned-1/eval/valid.json" "$work/learned-np2/eval/valid.json" \
  || fail "2 ranks reranked otherwise than one process"
if "$shopclip" rerank --run "$work/a" --method learned --split valid --out "$work/none" \
  > "$work/none.log" 2>&1; then
  fail "a run without a reranker was accepted"
fi
grep -q "no learned reranker" "$work/none.log" || { cat "$work/none.log"; fail "no reason for the refusal"; }

echo "== soups"
"$shopclip" soup --run "$work/a" --run "$work/a" --method uniform --split valid --out "$work/self" \
  >/dev/null 2>&1 || fail "uniform soup"
"$shopclip" weights-diff "$work/a/checkpoints/best.pt" "$work/self/checkpoints/best.pt" \
  > "$work/self.diff" 2>&1 || { cat "$work/self.diff"; fail "a soup of one checkpoint with itself differs from it"; }
cmp -s "$work/a/eval/valid.json" "$work/self/eval/valid.json" || fail "the self-soup scores otherwise"
"$shopclip" soup --run "$work/a" --run "$work/b" --method greedy --split valid --out "$work/greedy" \
  > "$work/greedy.log" 2>&1 || { cat "$work/greedy.log"; fail "greedy soup"; }
$python - "$work/greedy/soup.json" <<'PY' || fail "greedy soup record"
import json, sys
record = json.load(open(sys.argv[1]))
first, second = record["ingredients"]
assert first["kept"] and first["alone"] >= second["alone"], record
assert second["kept"] == (second["soup_mean_recall"] >= first["alone"]), record
kept = [i["checkpoint"] for i in record["ingredients"] if i["kept"]]
assert kept == record["kept"], record
PY
"$shopclip" eval --run "$work/greedy" --split valid >/dev/null 2>&1 || fail "eval of the soup"
if "$shopclip" soup --run "$work/a" --run "$work/c" --method uniform --out "$work/mixed" \
  > "$work/mixed.log" 2>&1; then
  fail "a soup of two architectures was accepted"
fi
grep -q "shape" "$work/mixed.log" || { cat "$work/mixed.log"; fail "the refusal does not name the shape"; }
echo "ensemble e2e: all checks passed"
