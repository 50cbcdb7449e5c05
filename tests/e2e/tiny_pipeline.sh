#!/usr/bin/env bash
# End-to-end at the tiny scale with the real binary:
#   synth -> prep (and a re-run that skips finished shards) -> train -> eval valid/test -> score,
#   a paused-then-resumed run that must end with the same weights as an uninterrupted one,
#   and bad input rows that are skipped, listed and counted. Every prediction file is scored again
#   by tests/tools/muge_score.py, written from the official rules without shopclip's code.
# Usage: tiny_pipeline.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-e2e-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "E2E FAILURE: $*" >&2; exit 1; }
# Scores every prediction file again with tests/tools/muge_score.py, a scorer that shares no code
# with shopclip's: independent_score REF PRED EXPECTED_JSON [--tianchi].
independent_score() {
  /usr/bin/python3 "$source_dir/tests/tools/muge_score.py" --ref "$1" --pred "$2" --expect "$3" \
    "${@:4}" >/dev/null || fail "the independent scorer disagrees with $3 on $2"
}
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$1" "$2"; }

data=$work/data
common=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data")

echo "== synth"
"$shopclip" data synth --scale tiny --out "$data" --seed 3
for f in train_imgs.tsv train_texts.jsonl valid_imgs.tsv valid_texts.jsonl test_imgs.tsv \
         test_texts.jsonl answers/test_texts.jsonl meta/synth.json; do
  [ -s "$data/$f" ] || fail "synth did not write $f"
done
grep -q '"image_ids":\[\]' "$data/test_texts.jsonl" || fail "test queries must carry empty image_ids"

echo "== prep"
"$shopclip" prep "${common[@]}" 2>&1 | tee "$work/prep1.log"
[ -f "$data/prep-r32/train/manifest.json" ] || fail "no train manifest"
ls "$data"/prep-r32/*/*.tmp 2>/dev/null && fail "temporary shard files left behind"
"$shopclip" prep "${common[@]}" 2>&1 | tee "$work/prep2.log"
grep -q "(0 written, 3 already done)" "$work/prep2.log" || fail "re-running prep did not skip finished shards"

echo "== train"
run=$work/run
"$shopclip" train "${common[@]}" --set "run.dir=$run"
for f in config.yaml log.txt metrics.jsonl vocab.txt summary.json bad_rows.jsonl \
         checkpoints/last.pt checkpoints/best.pt predictions/valid.jsonl eval/valid.json; do
  [ -s "$run/$f" ] || [ "$f" = bad_rows.jsonl ] || fail "train did not write $f"
done
grep -q '"type":"eval"' "$run/metrics.jsonl" || fail "no evaluation in metrics.jsonl"
[ "$(json_get "$run/eval/valid.json" '["success"]')" = True ] || fail "eval/valid.json not successful"
mean_recall=$(json_get "$run/eval/valid.json" '["scoreJson"]["mean_recall"]')
# A random ranking of the tiny valid pool (40 queries, ~3 relevant of ~120 images) scores about 12.
python3 -c "import sys; sys.exit(0 if float('$mean_recall') >= 30 else 1)" \
  || fail "valid MeanRecall $mean_recall is not above chance"
independent_score "$data/valid_texts.jsonl" "$run/predictions/valid.jsonl" "$run/eval/valid.json"
independent_score "$data/valid_texts.jsonl" "$run/predictions/valid.jsonl" "$run/summary.json"

echo "== eval valid (same checkpoint, same numbers) and test (submission only)"
"$shopclip" eval --run "$run" --set "data.root=$data" > "$work/eval_valid.json"
python3 - "$work/eval_valid.json" "$run/eval/valid.json" <<'EOF' || fail "eval differs from training's final eval"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a == b, (a, b)
EOF
"$shopclip" eval --run "$run" --set "data.root=$data" --split test
predictions=$run/predictions/test.jsonl
[ "$(wc -l < "$predictions")" -eq 40 ] || fail "test predictions must have one line per query"
[ ! -e "$run/eval/test.json" ] || fail "test split has no ground truth: no scores expected"
"$shopclip" score --ref "$data/answers/test_texts.jsonl" --pred "$predictions" > "$work/score.json"
[ "$(json_get "$work/score.json" '["success"]')" = True ] || fail "official scorer rejected the submission"
independent_score "$data/answers/test_texts.jsonl" "$predictions" "$work/score.json"

echo "== Tianchi-schema queries are read and answered in their own schema"
tianchi=$work/tianchi
mkdir -p "$tianchi"
python3 - "$data/valid_texts.jsonl" "$tianchi/valid_queries.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as dst:
    for line in src:
        row = json.loads(line)
        dst.write(json.dumps({"query_id": row["text_id"], "query_text": row["text"],
                              "item_ids": row["image_ids"]}, ensure_ascii=False) + "\n")
PY
"$shopclip" eval --run "$run" --set "data.root=$tianchi" --set "data.prep_dir=$data/prep-r32" \
  --set "run.dir=$work/tianchi_run" --checkpoint "$run/checkpoints/best.pt" > "$work/tianchi.json"
head -n 1 "$work/tianchi_run/predictions/valid.jsonl" | grep -q '"query_id"' \
  || fail "Tianchi predictions must use query_id"
"$shopclip" score --tianchi --ref "$tianchi/valid_queries.jsonl" \
  --pred "$work/tianchi_run/predictions/valid.jsonl" > "$work/tianchi_score.json"
independent_score "$tianchi/valid_queries.jsonl" "$work/tianchi_run/predictions/valid.jsonl" \
  "$work/tianchi_score.json" --tianchi
python3 - "$work/tianchi_score.json" "$run/eval/valid.json" <<'PY' || fail "Tianchi scores differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a == b, (a, b)
PY

echo "== the ViT image tower trains and evaluates"
"$shopclip" train "${common[@]}" --set "run.dir=$work/vit" --set model.image.type=vit \
  --set model.image.patch_size=8 --set model.image.width=32 --set model.image.layers=1 \
  --set model.image.heads=2 --set model.image.mlp=64 --set train.epochs=1
[ "$(json_get "$work/vit/eval/valid.json" '["success"]')" = True ] || fail "vit run did not evaluate"
independent_score "$data/valid_texts.jsonl" "$work/vit/predictions/valid.jsonl" "$work/vit/eval/valid.json"

echo "== pause and resume give the same weights as one uninterrupted run"
paused=$work/paused
"$shopclip" train "${common[@]}" --set "run.dir=$paused" --stop-after-steps 50
[ ! -e "$paused/summary.json" ] || fail "a paused run must not write its summary"
grep -q "paused after 50 steps (--resume continues): step 50 of" "$paused/log.txt" \
  || fail "the paused run does not say it paused at step 50"
"$shopclip" train "${common[@]}" --set "run.dir=$paused" --resume
# Same weights alone cannot tell a resume from a silent restart: the resumed process must have
# started at step 50 and trained only the remaining steps.
python3 "$source_dir/tests/e2e/check_resume.py" "$paused" 50 \
  "$(json_get "$run/summary.json" '["steps"]')" 1 || fail "the resumed run did not resume at step 50"
"$shopclip" weights-diff "$run/checkpoints/last.pt" "$paused/checkpoints/last.pt" --tolerance 0 \
  || fail "resumed run ended with other weights"
cmp "$run/predictions/valid.jsonl" "$paused/predictions/valid.jsonl" || fail "resumed run predicts differently"
if "$shopclip" train "${common[@]}" --set "run.dir=$run" 2>"$work/again.log"; then
  fail "training into a used run directory without --resume must fail"
fi
grep -q "pass --resume" "$work/again.log" || fail "unclear message for a used run directory"

echo "== bad rows are skipped, listed with file and line, and counted"
bad=$work/bad
mkdir -p "$bad"
cp "$data"/train_* "$data"/test_* "$bad"/
cp "$data/valid_imgs.tsv" "$bad/"
{ head -n 30 "$data/valid_texts.jsonl"
  echo 'not json at all'
  echo '{"text_id": "7", "text": "红色T恤", "image_ids": [1]}'
  tail -n +31 "$data/valid_texts.jsonl"; } > "$bad/valid_texts.jsonl"
printf '999\t@@@not-base64@@@\n' >> "$bad/valid_imgs.tsv"
"$shopclip" prep "${common[@]}" --set "data.root=$bad"
bad_run=$work/bad_run
"$shopclip" train "${common[@]}" --set "data.root=$bad" --set "run.dir=$bad_run" \
  --set train.epochs=1 --set data.max_bad_share=0.1 2>&1 | tee "$work/bad_train.log"
grep -q "valid_texts.jsonl:31: not JSON" "$work/bad_train.log" || fail "non-JSON line not listed"
grep -q "valid_texts.jsonl:32: 'text_id' is a string" "$work/bad_train.log" || fail "string id not listed"
grep -q "corrupt base64" "$bad_run/bad_rows.jsonl" || fail "corrupt image not in the run's report"
[ "$(wc -l < "$bad_run/bad_rows.jsonl")" -eq 3 ] || fail "expected exactly 3 bad rows in the report"
if "$shopclip" train "${common[@]}" --set "data.root=$bad" --set "run.dir=$work/strict" \
     --set data.max_bad_share=0.001 2>"$work/strict.log"; then
  fail "more bad rows than data.max_bad_share must fail the run"
fi
grep -q "data.max_bad_share" "$work/strict.log" || fail "the failure must name data.max_bad_share"

echo "E2E OK"
