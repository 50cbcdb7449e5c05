#!/usr/bin/env bash
# Proves tests/tools/muge_score.py right on hand-worked cases and able to fail: recall at ranks 1,
# 5, 6, 10 and absent, several relevant ids, both schemas, every official rejection, and
# --expect refusing a planted difference. Exits non-zero on the first case that goes wrong.
# Usage: muge_score_selftest.sh   (needs only /usr/bin/python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
scorer=("$python" "$here/muge_score.py")
work=$(mktemp -d "${TMPDIR:-/tmp}/muge-score-selftest-XXXXXX")
trap 'rm -rf "$work"' EXIT
cases=0
fail() { echo "MUGE SCORER SELFTEST FAILURE: $*" >&2; exit 1; }

# scores_are NAME R1 R5 R10 MEAN_RECALL -- ARGS... : the scorer succeeds with exactly these scores.
scores_are() {
  local name=$1 r1=$2 r5=$3 r10=$4 mr=$5
  shift 6
  local out status=0
  out=$("${scorer[@]}" "$@" 2>"$work/stderr") || status=$?
  [ $status -eq 0 ] || fail "$name: exit $status, expected 0: $out $(cat "$work/stderr")"
  $python - "$out" "$r1" "$r5" "$r10" "$mr" <<'EOF' || fail "$name: wrong scores: $out"
import json, sys
out = json.loads(sys.argv[1])
want = dict(zip(("r1", "r5", "r10", "mean_recall"), map(float, sys.argv[2:])))
s = out["scoreJson"]
assert out["success"] is True and set(s) == {"score", "mean_recall", "r1", "r5", "r10"}, out
assert out["score"] == s["score"] == s["mean_recall"], out
for key, value in want.items():
    assert abs(s[key] - value) < 1e-9, (key, s[key], value)
EOF
  cases=$((cases + 1))
  echo "ok   $name: r1 $r1 r5 $r5 r10 $r10 mean_recall $mr"
}

# rejected NAME WORDS -- ARGS... : the scorer exits 1 with success false and errorMsg holding WORDS.
rejected() {
  local name=$1 words=$2
  shift 3
  local out status=0
  out=$("${scorer[@]}" "$@" 2>"$work/stderr") || status=$?
  [ $status -eq 1 ] || fail "$name: exit $status, expected 1 (rejected): $out"
  $python - "$out" "$words" <<'EOF' || fail "$name: wrong rejection output: $out"
import json, sys
out = json.loads(sys.argv[1])
assert out["success"] is False and out["score"] == 0, out
assert sys.argv[2] in out["errorMsg"], (sys.argv[2], out["errorMsg"])
EOF
  cases=$((cases + 1))
  local message
  message=$(echo "$out" | $python -c 'import json, sys; print(json.load(sys.stdin)["errorMsg"])')
  echo "ok   $name: rejected ($message)"
}

# ---- files ---------------------------------------------------------------------------------
# Reference A, 6 queries. Predicted ranks of the first relevant id (worked by hand):
#   101: truth at rank 1      -> hit @1 @5 @10
#   102: truth at rank 5      -> hit    @5 @10
#   103: truth at rank 6      -> hit       @10
#   104: truth at rank 10     -> hit       @10
#   105: truth absent (it would be rank 11, the list stops at 10) -> no hit
#   106: truths {900 at rank 7, 901 at rank 3, 902 absent} -> first at 3 -> hit @5 @10
# hits @1 = 1, @5 = 3, @10 = 5 of 6: R@1 = 100/6, R@5 = 50, R@10 = 500/6,
# MeanRecall = (100/6 + 50 + 500/6) / 3 = 900/18 = 50.
cat > "$work/ref_a.jsonl" <<'EOF'
{"text_id": 101, "text": "红色连衣裙", "image_ids": [1]}
{"text_id": 102, "text": "男士衬衫", "image_ids": [2]}
{"text_id": 103, "text": "运动鞋", "image_ids": [3]}
{"text_id": 104, "text": "帆布包", "image_ids": [4]}
{"text_id": 105, "text": "草帽", "image_ids": [5]}
{"text_id": 106, "text": "格纹围巾", "image_ids": [900, 901, 902]}
EOF
# Lines in another order than the reference; 999 is a query the reference lacks (ignored, as
# officially). Ids of other queries' truths appear in wrong places to catch a scorer that mixes
# queries up (e.g. 5, query 105's truth, is predicted for 101 and 106).
cat > "$work/pred_a.jsonl" <<'EOF'
{"text_id": 106, "image_ids": [50, 51, 901, 52, 53, 54, 900, 55, 56, 5]}
{"text_id": 104, "image_ids": [40, 41, 42, 43, 44, 45, 46, 47, 48, 4]}
{"text_id": 101, "image_ids": [1, 11, 12, 13, 14, 15, 16, 17, 18, 5]}
{"text_id": 999, "image_ids": [1, 2, 3, 4, 5, 900, 901, 902, 6, 7]}
{"text_id": 102, "image_ids": [20, 21, 22, 23, 2, 25, 26, 27, 28, 29]}
{"text_id": 103, "image_ids": [30, 31, 32, 33, 34, 3, 36, 37, 38, 39]}
{"text_id": 105, "image_ids": [60, 61, 62, 63, 64, 65, 66, 67, 68, 69]}
EOF
# Reference B, 4 queries: ranks 1, 4, 9, absent -> R@1 25, R@5 50, R@10 75, MeanRecall 50.
cat > "$work/ref_b.jsonl" <<'EOF'
{"text_id": 1, "text": "a", "image_ids": [10, 11]}
{"text_id": 2, "text": "b", "image_ids": [20]}
{"text_id": 3, "text": "c", "image_ids": [30]}
{"text_id": 4, "text": "d", "image_ids": [40]}
EOF
cat > "$work/pred_b.jsonl" <<'EOF'
{"text_id": 1, "image_ids": [11, 1, 2, 3, 4, 5, 6, 7, 8, 10]}
{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]}
{"text_id": 3, "image_ids": [1, 2, 3, 4, 5, 6, 7, 8, 30, 9]}
{"text_id": 4, "image_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 41]}
EOF
# Everything at rank 1 and everything absent.
"$python" - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
with open(f"{work}/pred_b_all.jsonl", "w") as f:
    for q, truth in ((1, 10), (2, 20), (3, 30), (4, 40)):
        f.write(json.dumps({"text_id": q, "image_ids": [truth] + list(range(100, 109))}) + "\n")
with open(f"{work}/pred_b_none.jsonl", "w") as f:
    for q in (1, 2, 3, 4):
        f.write(json.dumps({"text_id": q, "image_ids": list(range(100, 110))}) + "\n")
# Tianchi schema of A: the same queries under query_id / query_text / item_ids.
for name in ("ref_a", "pred_a"):
    with open(f"{work}/{name}.jsonl", encoding="utf-8") as f, \
         open(f"{work}/{name}_tianchi.jsonl", "w", encoding="utf-8") as out:
        for line in f:
            row = json.loads(line)
            row = {{"text_id": "query_id", "text": "query_text", "image_ids": "item_ids"}[k]: v
                   for k, v in row.items()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
EOF

echo "== hand-worked scores"
scores_are "ranks 1/5/6/10/absent/several truths" 16.666666666666668 50 83.33333333333333 50 -- \
  --ref "$work/ref_a.jsonl" --pred "$work/pred_a.jsonl"
scores_are "ranks 1/4/9/absent" 25 50 75 50 -- --ref "$work/ref_b.jsonl" --pred "$work/pred_b.jsonl"
scores_are "all at rank 1" 100 100 100 100 -- --ref "$work/ref_b.jsonl" \
  --pred "$work/pred_b_all.jsonl"
scores_are "all absent" 0 0 0 0 -- --ref "$work/ref_b.jsonl" --pred "$work/pred_b_none.jsonl"
# Windows line ends and no newline after the last line are still one JSON object a line.
$python -c "import sys; d = open(sys.argv[1]).read().strip('\n')
open(sys.argv[2], 'w', newline='').write(d.replace('\n', '\r\n'))" \
  "$work/pred_b.jsonl" "$work/pred_b_crlf.jsonl"
scores_are "CRLF lines, no final newline" 25 50 75 50 -- --ref "$work/ref_b.jsonl" \
  --pred "$work/pred_b_crlf.jsonl"
# Per-query output: first-hit ranks of A in reference order.
"${scorer[@]}" --ref "$work/ref_a.jsonl" --pred "$work/pred_a.jsonl" \
  --per-query "$work/per_query.jsonl" >/dev/null
$python - "$work/per_query.jsonl" <<'EOF' || fail "per-query ranks are wrong"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["text_id"], r["first_hit"]) for r in rows] == \
    [(101, 1), (102, 5), (103, 6), (104, 10), (105, None), (106, 3)], rows
assert [(r["hit1"], r["hit5"], r["hit10"]) for r in rows] == [
    (True, True, True), (False, True, True), (False, False, True), (False, False, True),
    (False, False, False), (False, True, True)], rows
EOF
cases=$((cases + 1))
echo "ok   per-query first-hit ranks 1, 5, 6, 10, none, 3"

echo "== Tianchi schema"
scores_are "Tianchi A" 16.666666666666668 50 83.33333333333333 50 -- --tianchi \
  --ref "$work/ref_a_tianchi.jsonl" --pred "$work/pred_a_tianchi.jsonl"
rejected "Chinese-CLIP files read as Tianchi" "has no 'query_id'" -- --tianchi \
  --ref "$work/ref_a.jsonl" --pred "$work/pred_a.jsonl"
rejected "Tianchi predictions read as Chinese-CLIP" "has no 'text_id'" -- \
  --ref "$work/ref_a.jsonl" --pred "$work/pred_a_tianchi.jsonl"

echo "== official rejections"
# bad NAME LINE: pred_b with its line for query 2 replaced by LINE (or, for a missing query,
# dropped when LINE is empty).
bad() {
  local file=$work/bad_$1.jsonl
  $python - "$work/pred_b.jsonl" "$file" "$2" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
new = [l for l in lines if '"text_id": 2,' not in l]
assert len(new) == 3
if sys.argv[3]:
    new.insert(1, sys.argv[3])
open(sys.argv[2], "w").write("\n".join(new) + "\n")
EOF
  echo "$file"
}
ref=(--ref "$work/ref_b.jsonl")
rejected "not JSON" "not JSON" -- "${ref[@]}" \
  --pred "$(bad notjson '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]')"
rejected "blank line" "not JSON" -- "${ref[@]}" --pred "$(bad blank ' ')"
rejected "JSON but not an object" "not a JSON object" -- "${ref[@]}" \
  --pred "$(bad array '[2, [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]]')"
rejected "string image id" "non-integer id '20'" -- "${ref[@]}" \
  --pred "$(bad string '{"text_id": 2, "image_ids": [1, 2, 3, "20", 4, 5, 6, 7, 8, 9]}')"
rejected "float image id" "non-integer id 20.0" -- "${ref[@]}" \
  --pred "$(bad float '{"text_id": 2, "image_ids": [1, 2, 3, 20.0, 4, 5, 6, 7, 8, 9]}')"
rejected "bool image id" "non-integer id True" -- "${ref[@]}" \
  --pred "$(bad bool '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, true]}')"
rejected "null image id" "non-integer id None" -- "${ref[@]}" \
  --pred "$(bad null '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, null]}')"
rejected "string text_id" "text_id '2' is not an integer" -- "${ref[@]}" \
  --pred "$(bad string_qid '{"text_id": "2", "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]}')"
rejected "float text_id" "text_id 2.0 is not an integer" -- "${ref[@]}" \
  --pred "$(bad float_qid '{"text_id": 2.0, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]}')"
rejected "bool text_id" "text_id True is not an integer" -- "${ref[@]}" \
  --pred "$(bad bool_qid '{"text_id": true, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]}')"
rejected "image_ids not a list" "is not a list" -- "${ref[@]}" \
  --pred "$(bad notlist '{"text_id": 2, "image_ids": 20}')"
rejected "no image_ids" "has no 'image_ids'" -- "${ref[@]}" --pred "$(bad noids '{"text_id": 2}')"
rejected "9 ids" "has 9 ids, exactly 10" -- "${ref[@]}" \
  --pred "$(bad nine '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8]}')"
rejected "11 ids" "has 11 ids, exactly 10" -- "${ref[@]}" \
  --pred "$(bad eleven '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9, 10]}')"
rejected "no ids" "has 0 ids, exactly 10" -- "${ref[@]}" \
  --pred "$(bad empty '{"text_id": 2, "image_ids": []}')"
rejected "duplicate id" "repeats ids [7]" -- "${ref[@]}" \
  --pred "$(bad dup_id '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 7]}')"
dup_query=$work/bad_dup_query.jsonl
{ cat "$work/pred_b.jsonl"; echo '{"text_id": 2, "image_ids": [1, 2, 3, 20, 4, 5, 6, 7, 8, 9]}'; } \
  > "$dup_query"
rejected "query predicted twice" "query 2 is predicted twice" -- "${ref[@]}" --pred "$dup_query"
rejected "missing query" "1 reference queries have no prediction: 2" -- "${ref[@]}" \
  --pred "$(bad missing '')"
rejected "empty prediction file" "4 reference queries have no prediction" -- "${ref[@]}" \
  --pred /dev/null
rejected "missing prediction file" "cannot read the prediction file" -- "${ref[@]}" \
  --pred "$work/no_such_file.jsonl"
# The reference is checked too: a test file without answers cannot be scored.
printf '%s\n' '{"text_id": 1, "text": "a", "image_ids": []}' > "$work/ref_no_truth.jsonl"
rejected "reference without ground truth" "has no ground-truth ids" -- \
  --ref "$work/ref_no_truth.jsonl" --pred "$work/pred_b.jsonl"
printf '%s\n' '{"text_id": 1, "text": "a", "image_ids": [10]}' \
  '{"text_id": 1, "text": "a", "image_ids": [11]}' > "$work/ref_dup.jsonl"
rejected "reference query twice" "query 1 appears twice" -- \
  --ref "$work/ref_dup.jsonl" --pred "$work/pred_b.jsonl"

echo "== --expect against shopclip-shaped JSON"
"$python" - "$work" <<'EOF'
import json, sys
w = sys.argv[1]
good = {"r1": 25.0, "r5": 50.0, "r10": 75.0, "mean_recall": 50.0}
def write(name, data, text=None):
    with open(f"{w}/{name}", "w") as f:
        f.write(text if text is not None else json.dumps(data))
write("official.json", {"success": True, "score": 50.0, "scoreJson": {"score": 50.0, **good}})
write("summary.json", {"steps": 3, "valid": {**good, "queries": 4}})
write("report.json", {"split": "valid", "scores": {**good, "queries": 4}, "worst": []})
write("compare.json", {"a": {"scores": {**good, "queries": 4}},
                       "b": {"scores": {**good, "r5": 75.0, "mean_recall": 58.333333333333336}}})
write("stdout.txt", None, "[log] search: 4 queries\n" + json.dumps(
    {"success": True, "score": 50.0, "scoreJson": {"score": 50.0, **good}}) + "\n")
write("top.json", good)
# Planted differences, each alone.
write("off_r5.json", {"success": True, "score": 50.0,
                      "scoreJson": {"score": 50.0, **good, "r5": 50.01}})
write("off_tiny.json", {"scoreJson": {**good, "r10": 75.0 + 1e-12}})
write("off_score.json", {"success": True, "score": 50.5, "scoreJson": {**good, "score": 50.5}})
write("off_queries.json", {"valid": {**good, "queries": 5}})
write("off_string.json", {"scoreJson": {**good, "r1": "25.0"}})
write("failed.json", {"success": False, "score": 0, "errorMsg": "x"})
EOF
pair=(--ref "$work/ref_b.jsonl" --pred "$work/pred_b.jsonl")
for shape in official.json summary.json report.json stdout.txt top.json off_tiny.json; do
  "${scorer[@]}" "${pair[@]}" --expect "$work/$shape" >/dev/null 2>"$work/stderr" \
    || fail "--expect $shape should agree: $(cat "$work/stderr")"
  grep -q "^agrees with" "$work/stderr" || fail "--expect $shape: no agreement line"
  cases=$((cases + 1))
  echo "ok   --expect agrees with $shape"
done
"${scorer[@]}" "${pair[@]}" --expect "$work/compare.json" --expect-path a.scores >/dev/null \
  2>/dev/null || fail "--expect compare.json a.scores should agree"
cases=$((cases + 1))
echo "ok   --expect agrees with compare.json [a.scores]"
# expect_differs NAME WORDS ARGS...: exit 2, both sides printed, the differing key named.
expect_differs() {
  local name=$1 words=$2 status=0
  shift 2
  "${scorer[@]}" "${pair[@]}" "$@" >/dev/null 2>"$work/stderr" || status=$?
  [ $status -eq 2 ] || fail "$name: exit $status, expected 2 (mismatch)"
  grep -q "MISMATCH" "$work/stderr" && grep -q "shopclip: " "$work/stderr" \
    && grep -q "independent: " "$work/stderr" && grep -qF "$words" "$work/stderr" \
    || fail "$name: the mismatch report lacks '$words' or one side: $(cat "$work/stderr")"
  cases=$((cases + 1))
  echo "ok   $name: $(grep -F "$words" "$work/stderr" | head -1 | sed 's/^ *//')"
}
expect_differs "planted r5 +0.01" "r5: shopclip 50.01, independent 50.0" \
  --expect "$work/off_r5.json"
expect_differs "planted score" "score: shopclip 50.5" --expect "$work/off_score.json"
expect_differs "planted query count" "queries: shopclip 5, reference 4" \
  --expect "$work/off_queries.json"
expect_differs "string in place of a number" "r1: shopclip '25.0'" --expect "$work/off_string.json"
expect_differs "compare.json's other run" "r5: shopclip 75.0" --expect "$work/compare.json" \
  --expect-path b.scores
expect_differs "tighter tolerance than the difference" "r10: shopclip 75.000000000001" \
  --expect "$work/off_tiny.json" --tolerance 1e-13
status=0
"${scorer[@]}" "${pair[@]}" --expect "$work/failed.json" >/dev/null 2>&1 || status=$?
[ $status -ne 0 ] || fail "--expect of a failed shopclip result should not pass"
cases=$((cases + 1))
echo "ok   --expect refuses a shopclip result that reports a failure (exit $status)"

echo "muge_score selftest OK: $cases cases"
