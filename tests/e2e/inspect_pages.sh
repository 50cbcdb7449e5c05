#!/usr/bin/env bash
# End to end at the tiny scale with the real binary: `data stats`, `data check` (clean, then a
# copy with one planted problem of every kind), `report` and `compare`; their JSON numbers checked
# against independent Python computations and the official scores, and every HTML page loaded in
# headless Chromium (no console errors, charts and thumbnails present in the rendered DOM, Chinese
# text drawn with a CJK font). Screenshots are kept in ARTIFACT_DIR.
# Usage: inspect_pages.sh SHOPCLIP_BINARY SOURCE_DIR ARTIFACT_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
artifacts=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-pages-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3  # Debian's: python3-websocket for the browser check
mkdir -p "$artifacts"
if ! command -v chromium >/dev/null || ! $python -c "import websocket" 2>/dev/null; then
  fail "chromium and python3-websocket are needed to load the pages (launch/setup.sh installs them)"
fi
check_page() {  # PAGE NAME ARGS... : loads the page, keeps its screenshot and summary
  local page=$1 name=$2
  shift 2
  $python "$source_dir/tests/browser/check_page.py" "$page" --screenshot "$artifacts/$name.png" \
    --json "$artifacts/$name.json" --images-loaded --expect-cjk-font "$@" \
    || fail "$name page failed in the browser (see $artifacts/$name.json)"
}

data=$work/data
common=(--config "$source_dir/configs/tiny.yaml" --set "data.root=$data")
"$shopclip" data synth --scale tiny --out "$data" --seed 3 >/dev/null

echo "== data stats"
"$shopclip" data stats "$data" --out "$work/stats"
[ -s "$work/stats/stats.html" ] && [ -s "$work/stats/stats.json" ] || fail "stats files missing"
$python - "$work/stats/stats.json" "$data" <<'EOF' || fail "data stats numbers are wrong"
import base64, json, struct, sys
stats, root = json.load(open(sys.argv[1])), sys.argv[2]
splits = {s["split"]: s for s in stats["splits"]}
assert list(splits) == ["train", "valid", "test"], list(splits)
for name, s in splits.items():
    rows = [json.loads(l) for l in open(f"{root}/{name}_texts.jsonl", encoding="utf-8")]
    assert s["queries"] == len(rows), (name, s["queries"], len(rows))
    mean_chars = sum(len(r["text"]) for r in rows) / len(rows)  # len() counts code points
    assert abs(s["query_chars"]["mean"] - mean_chars) < 1e-9, (name, s["query_chars"]["mean"], mean_chars)
    relevant = [len(r["image_ids"]) for r in rows if r["image_ids"]]
    if relevant:
        assert abs(s["relevant_images"]["mean"] - sum(relevant) / len(relevant)) < 1e-9, name
    else:
        assert s["relevant_images"]["total"] == 0, name
    lines = open(f"{root}/{name}_imgs.tsv").read().splitlines()
    assert s["images"] == len(lines), (name, s["images"], len(lines))
    sizes = [len(base64.b64decode(l.split("\t")[1])) / 1024 for l in lines]
    assert abs(s["file_kib"]["mean"] - sum(sizes) / len(sizes)) < 1e-6, name
    assert s["width"]["min"] == s["width"]["max"] == 64, s["width"]  # synth: 64 x 64 JPEGs
    assert s["hue"]["total"] > 0 and s["saturation"]["total"] > 0
    assert s["top_words"] and s["word_tokens"] > s["queries"]
assert stats["domain_terms"] and all(t["ratio"] > 1 for t in stats["domain_terms"])
assert [u["split"] for u in stats["unseen"]] == ["valid", "test"]
print("stats.json agrees with the files")
EOF
check_page "$work/stats/stats.html" stats --expect 'svg.chart[data-chart="histogram"]>=9' \
  --expect 'svg.chart[data-chart="bar"]>=4' --expect 'table.data>=3' --expect-text "Domain terms"

echo "== data check: clean, then with planted problems"
"$shopclip" data check "$data" --out "$work/check" > "$work/check.out" \
  || fail "the clean tiny dataset should pass data check (exit $?)"
[ -s "$work/check/check.json" ] || fail "no check.json"
# A copy of the tiny dataset with one planted problem of every kind, each to be found exactly once.
bad=$work/bad
cp -r "$data" "$bad"
$python "$source_dir/tests/e2e/plant_problems.py" plant "$bad" "$work/planted.json"
set +e
"$shopclip" data check "$bad" --out "$work/check_bad" > "$work/check_bad.out"
status=$?
set -e
[ $status -eq 2 ] || fail "data check should exit 2 on errors, got $status"
$python "$source_dir/tests/e2e/plant_problems.py" verify "$work/planted.json" \
  "$work/check_bad/check.json" || fail "data check did not find each planted problem once"
grep -q "valid_texts.jsonl:[0-9]*: error \[query-empty-text\]" "$work/check_bad.out" \
  || fail "the terminal report should list findings as file:line: severity [code]"
cp "$work/check_bad/check.txt" "$artifacts/check_planted.txt"

echo "== two short runs"
"$shopclip" prep "${common[@]}" >/dev/null 2>&1
"$shopclip" train "${common[@]}" --set "run.dir=$work/run_a" --set train.lr=1e-3 >/dev/null 2>&1
"$shopclip" train "${common[@]}" --set "run.dir=$work/run_b" --set train.lr=3e-3 >/dev/null 2>&1
"$shopclip" eval --run "$work/run_a" --set "data.root=$data" --split test >/dev/null 2>&1

echo "== report"
"$shopclip" report "$work/run_a" --worst 30
page=$work/run_a/report/valid.html
[ -s "$page" ] && [ -s "$work/run_a/report/valid.json" ] || fail "report files missing"
$python - "$work/run_a/report/valid.json" "$work/run_a/eval/valid.json" <<'EOF' || fail "report scores differ from the run's"
import json, sys
report, official = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["scoreJson"]
for key in ("r1", "r5", "r10", "mean_recall"):
    assert abs(report["scores"][key] - official[key]) < 1e-9, (key, report["scores"][key], official[key])
assert len(report["worst"]) == 30
ranks = [q["mean_recall"] for q in report["worst"]]
assert ranks == sorted(ranks), ranks
assert sum(g["queries"] for g in report["by_length"]) == report["scores"]["queries"]
print("report scores equal the official ones")
EOF
check_page "$page" report --expect 'svg.chart[data-chart="line"]>=3' \
  --expect 'svg.chart[data-chart="bar"]>=2' --expect 'figure.thumb.hit>=1' \
  --expect 'figure.thumb.miss>=50' --expect 'figure.thumb.missed-truth>=20' \
  --expect 'h3.query==30' --expect-text "Recall by keyword"
# The test split has no ground truth in its own file: refused, then scored with its answers.
if "$shopclip" report "$work/run_a" --split test 2> "$work/test_report.err"; then
  fail "a report on the test split without answers should fail"
fi
grep -q -- "--ref" "$work/test_report.err" || fail "the error should point to --ref"
"$shopclip" report "$work/run_a" --split test --ref "$data/answers/test_texts.jsonl" --worst 5
[ -s "$work/run_a/report/test.html" ] || fail "no test report"

echo "== compare"
"$shopclip" compare "$work/run_a" "$work/run_b" --out "$work/compare.html" --resamples 2000 \
  | tee "$work/compare.out"
grep -q "paired bootstrap" "$work/compare.out" || fail "no bootstrap line in the terminal"
$python - "$work/compare.json" "$work/run_a/eval/valid.json" "$work/run_b/eval/valid.json" <<'EOF' || fail "compare numbers are wrong"
import json, sys
c = json.load(open(sys.argv[1]))
a, b = (json.load(open(p))["scoreJson"]["mean_recall"] for p in sys.argv[2:])
d = c["mean_recall_difference"]
assert abs(d["mean"] - (b - a)) < 1e-9, (d["mean"], b - a)
assert d["ci_low"] <= d["mean"] <= d["ci_high"] and 0 < d["p_value"] <= 1, d
print(f"MeanRecall difference {d['mean']:+.2f} equals B - A of the official scores")
EOF
check_page "$work/compare.html" compare --expect 'svg.chart>=2' --expect 'p.verdict==1' \
  --expect-text "paired bootstrap"
echo "E2E inspect pages OK"
