#!/usr/bin/env bash
# End to end at the tiny scale with the real binary: `data stats`, `data check` (clean, then a
# copy with one planted problem of every kind), `report` and `compare`; their JSON numbers checked
# against independent Python computations: statistics recomputed from the dataset files, scores
# and per-query hits from tests/tools/muge_score.py (the official MUGE rules, written apart from
# shopclip's metrics code); and every HTML page loaded in headless Chromium (no console errors,
# charts and thumbnails present in the rendered DOM, Chinese text drawn with a CJK font).
# Screenshots are kept in ARTIFACT_DIR.
# Usage: inspect_pages.sh SHOPCLIP_BINARY SOURCE_DIR ARTIFACT_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
artifacts=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-pages-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3  # Debian's: python3-websocket for the browser check
scorer=("$python" "$source_dir/tests/tools/muge_score.py")  # independent official MUGE scorer
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
# Every number of stats.json recomputed in Python from the dataset files, not through shopclip:
# query lengths and words (python3-jieba, cut HMM=False, which data/segmenter.h mirrors), top
# words, domain terms against jieba's dictionary, unseen vocabulary, image sizes and file sizes,
# hue and saturation from Pillow's decoding (the same libjpeg-turbo with default settings as
# shopclip's, so the same pixels). Counts exactly; tolerances are stated where used.
$python - "$work/stats/stats.json" "$data" <<'EOF' || fail "data stats numbers are wrong"
import base64, bisect, io, json, math, os, sys
from collections import Counter
import jieba
from PIL import Image
jieba.setLogLevel(60)
if os.environ.get("SHOPCLIP_JIEBA_DICT"):  # the dictionary shopclip then uses
    jieba.set_dictionary(os.environ["SHOPCLIP_JIEBA_DICT"])
stats, root = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2]
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)
def close(a, b, rel):  # relative tolerance (absolute below 1)
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))

# What is counted (the definitions of data/stats.h): a query's text with ASCII whitespace
# trimmed; its words are the jieba.cut(text, HMM=False) tokens holding a letter, digit or CJK
# character; pixels are every 4th in x and y from (2, 2); saturation (max - min) / max over all
# sampled pixels; hue in degrees over those with saturation and value >= 0.15.
def is_letter_or_digit(c):
    c = ord(c)
    return (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or 0x4E00 <= c <= 0x9FFF
            or 0x3400 <= c <= 0x4DBF or 0x20000 <= c <= 0x2A6DF or 0xF900 <= c <= 0xFAFF
            or 0xFF10 <= c <= 0xFF19 or 0xFF21 <= c <= 0xFF3A or 0xFF41 <= c <= 0xFF5A
            or (0xC0 <= c <= 0x24F and c not in (0xD7, 0xF7)))
def words_of(text):
    return [w for w in jieba.cut(text, HMM=False) if any(map(is_letter_or_digit, w))]
def most_frequent(counts, n):  # ties by the word (code-point order = UTF-8 byte order)
    return sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:n]

def uniform(low, high, bins):
    return [low + (high - low) * i / bins for i in range(bins + 1)]
def geometric(low, high, bins):
    return [low * (high / low) ** (i / bins) for i in range(bins + 1)]
def quantile(counts, edges, lo, hi, q):  # interpolated inside its bin, within [min, max]
    n = sum(counts)
    if n == 0:
        return 0.0
    target, seen = q * n, 0
    for i, c in enumerate(counts):
        if c and seen + c >= target:
            low, high = max(edges[i], lo), min(edges[i + 1], hi)
            return min(max(low + (high - low) * (target - seen) / c, lo), hi)
        seen += c
    return hi
def histogram(name, got, edges, values):
    """Bins [e_i, e_i+1), below the first to the first, at or above the last to the last."""
    check(len(got["edges"]) == len(edges)
          and all(close(a, b, 1e-12) for a, b in zip(got["edges"], edges)),
          f"{name}: edges {got['edges']} are not {edges}")
    counts = [0] * (len(edges) - 1)
    for v in values:  # binned on the reported edges (equal to the definition's, checked above)
        counts[bisect.bisect_right(got["edges"], v, 1, len(edges) - 1) - 1] += 1
    check(got["counts"] == counts, f"{name}: counts {got['counts']} != independent {counts}")
    check(got["total"] == len(values), f"{name}: total {got['total']} != {len(values)}")
    if values:
        # min and max exactly; the mean to 1e-12 relative only, as a sum of many doubles depends
        # on the order of addition.
        lo, hi, mean = min(values), max(values), math.fsum(values) / len(values)
        check(got["min"] == lo and got["max"] == hi,
              f"{name}: min/max {got['min']}/{got['max']} != {lo}/{hi}")
        check(close(got["mean"], mean, 1e-12), f"{name}: mean {got['mean']!r} != {mean!r}")
        for key, q in (("median", 0.5), ("p90", 0.9)):
            want = quantile(counts, got["edges"], lo, hi, q)
            check(close(got[key], want, 1e-12), f"{name}: {key} {got[key]!r} != {want!r}")

splits = {s["split"]: s for s in stats["splits"]}
check(list(splits) == ["train", "valid", "test"], f"splits {list(splits)}")
word_counts, edge_pixels = {}, 0
for name, s in splits.items():
    where = f"{name}:"
    # -- queries
    rows = [json.loads(l) for l in open(f"{root}/{name}_texts.jsonl", encoding="utf-8")
            if l.strip()]
    texts = [r["text"].strip(" \t\r\n") for r in rows]
    check(s["queries"] == len(rows) and s["bad_query_lines"] == 0,
          f"{where} queries {s['queries']} (bad {s['bad_query_lines']}) != {len(rows)}")
    histogram(f"{where} query_chars", s["query_chars"], uniform(0, 64, 32),
              [float(len(t)) for t in texts])  # len() counts code points
    words = [words_of(t) for t in texts]
    histogram(f"{where} query_words", s["query_words"], uniform(0, 24, 24),
              [float(len(w)) for w in words])
    histogram(f"{where} relevant_images", s["relevant_images"], uniform(1, 21, 20),
              [float(len(r["image_ids"])) for r in rows if r["image_ids"]])
    counts = Counter(w for ws in words for w in ws)
    word_counts[name] = counts
    check(s["word_tokens"] == sum(counts.values()) and s["word_types"] == len(counts),
          f"{where} word tokens/types {s['word_tokens']}/{s['word_types']} != "
          f"{sum(counts.values())}/{len(counts)}")
    top = most_frequent(counts, 30)
    got = [(t["word"], t["count"]) for t in s["top_words"]]
    check(got == top, f"{where} top_words {got[:8]}... != {top[:8]}...")
    # -- images
    lines = [l for l in open(f"{root}/{name}_imgs.tsv").read().splitlines() if l]
    check(s["images"] == len(lines) and s["bad_image_lines"] == 0,
          f"{where} images {s['images']} (bad {s['bad_image_lines']}) != {len(lines)}")
    widths, heights, aspects, kib, saturations, hues = [], [], [], [], [], []
    hue_bins, hue_edges = [0] * 36, [0] * 36  # per bin: pixels, and those exactly on its edge
    for line in lines:
        data = base64.b64decode(line.split("\t", 1)[1])
        image = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = image.size
        widths.append(float(w)); heights.append(float(h)); aspects.append(w / h)
        kib.append(len(data) / 1024)
        px = image.load()
        for y in range(2, h, 4):
            for x in range(2, w, 4):
                r, g, b = px[x, y]
                high, low = max(r, g, b), min(r, g, b)
                d = high - low
                saturations.append(d / high if high else 0.0)
                # grey (saturation or value < 0.15) has no hue; compared in integers
                if high == 0 or 20 * d < 3 * high or 20 * high < 3 * 255:
                    continue
                # hue = 60 n / d degrees exactly, 0 <= n < 6 d
                n = ((g - b) % (6 * d) if high == r else
                     (b - r) + 2 * d if high == g else (r - g) + 4 * d)
                hues.append(60 * n / d)
                hue_bins[6 * n // d] += 1
                hue_edges[6 * n // d] += n > 0 and (6 * n) % d == 0
    edge_pixels += sum(hue_edges)
    histogram(f"{where} width", s["width"], geometric(16, 4096, 16), widths)
    histogram(f"{where} height", s["height"], geometric(16, 4096, 16), heights)
    histogram(f"{where} aspect", s["aspect"], uniform(0, 3, 30), aspects)
    histogram(f"{where} file_kib", s["file_kib"], geometric(0.5, 2048, 24), kib)
    # Saturation exactly (bins, min, max): (max - min) / max is one division of integers <= 255,
    # correctly rounded in both languages, and the edges i/20 are at least 1/5100 away from any
    # other such fraction, so both sides bin it the same.
    histogram(f"{where} saturation", s["saturation"], uniform(0, 1, 20), saturations)
    # Hue bins exactly too: the bin of 60 n / d is (6 n) // d in integers, and a double formula
    # that rounds once (60 (g - b) / d, + 360 when negative) gets the same bin, since a hue that
    # is not exactly an edge k*10 lies at least 10/255 degrees from it.
    hue = s["hue"]
    check(hue["edges"] == uniform(0, 360, 36), f"{where} hue edges {hue['edges']}")
    if hue["counts"] != hue_bins or hue["total"] != len(hues):
        # Say whether the difference is only pixels exactly on an edge counted in the bin below.
        got, down, moved = hue["counts"], 0, 0
        for k in range(36):
            down = got[k] - hue_bins[k] + down if len(got) == 36 else -1  # from edge k + 1
            if not 0 <= down <= (hue_edges[k + 1] if k < 35 else 0):
                moved = None
                break
            moved += down
        why = (f"; the whole difference is {moved} of the {sum(hue_edges)} pixels whose hue is"
               " exactly a bin edge (k*10 degrees) counted in the bin below it, against the"
               " definition [edge_k, edge_k+1): data/stats.cpp's hue rounds below exact edges"
               if moved else "")
        check(False, f"{where} hue counts {got} (total {hue['total']}) != exact {hue_bins}"
              f" (total {len(hues)}){why}")
    if hues:
        # Hue values are 60 n / d rounded once here and several times in C++ (a few ulps):
        # min, max and mean to 1e-9 relative. Quantiles from the counts as reported.
        for key, want in (("min", min(hues)), ("max", max(hues)),
                          ("mean", math.fsum(hues) / len(hues))):
            check(close(hue[key], want, 1e-9), f"{where} hue {key} {hue[key]!r} != {want!r}")
        for key, q in (("median", 0.5), ("p90", 0.9)):
            want = quantile(hue["counts"], hue["edges"], hue["min"], hue["max"], q)
            check(close(hue[key], want, 1e-12), f"{where} hue {key} {hue[key]!r} != {want!r}")
    check(s["images"] and hue["total"] and saturations and s["top_words"],
          f"{where} the tiny dataset should have images, colours and words")

# -- domain terms: words of all splits (at least 5 occurrences) by their frequency in the
# queries over their frequency in jieba's dictionary (count + 1 over total + 1)
all_counts = sum(word_counts.values(), Counter())
tokens = sum(all_counts.values())
jieba.dt.check_initialized()
total = jieba.dt.total + 1
terms = []
for word, count in all_counts.items():
    if count >= 5:
        q, g = 1e6 * count / tokens, 1e6 * (jieba.dt.FREQ.get(word, 0) + 1) / total
        terms.append((q / g, word, count, q, g))
terms = sorted(terms, key=lambda t: (-t[0], t[1]))[:30]
got = [(t["word"], t["count"]) for t in stats["domain_terms"]]
want = [(t[1], t[2]) for t in terms]
check(got == want and got, f"domain terms {got[:6]}... != {want[:6]}...")
for t, (ratio, word, count, q, g) in zip(stats["domain_terms"], terms):
    check(close(t["ratio"], ratio, 1e-12) and close(t["query_per_million"], q, 1e-12)
          and close(t["general_per_million"], g, 1e-12), f"domain term {t} != {ratio, q, g}")
# -- vocabulary of valid and test that train never shows
train_chars = {c for w in word_counts["train"] for c in w}
unseen_stats = {u["split"]: u for u in stats["unseen"]}
check(list(unseen_stats) == ["valid", "test"], f"unseen splits {list(unseen_stats)}")
for name in ("valid", "test"):
    counts, u = word_counts[name], unseen_stats.get(name, {})
    unseen = {w: c for w, c in counts.items() if w not in word_counts["train"]}
    chars = {c for w in counts for c in w}
    want = {"word_types": len(counts), "unseen_word_types": len(unseen),
            "word_tokens": sum(counts.values()), "unseen_word_tokens": sum(unseen.values()),
            "char_types": len(chars), "unseen_char_types": len(chars - train_chars),
            "examples": [{"word": w, "count": c} for w, c in most_frequent(unseen, 20)]}
    for key, value in want.items():
        check(u.get(key) == value, f"unseen {name} {key}: {u.get(key)} != {value}")
    for key, value in (("unseen_type_share", len(unseen) / len(counts)),
                       ("unseen_token_share", sum(unseen.values()) / sum(counts.values()))):
        check(close(u.get(key, -1), value, 1e-12), f"unseen {name} {key}: {u.get(key)} != {value}")
if problems:
    print("stats.json differs from the independent computation:", *problems, sep="\n  ")
    sys.exit(1)
print(f"stats.json agrees with the independent computation: "
      f"{sum(s['images'] for s in splits.values())} images decoded, "
      f"{sum(s['hue']['total'] for s in splits.values())} chromatic pixels ({edge_pixels} exactly "
      f"on a hue bin edge), {len(all_counts)} word types")
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
# The predictions the report reads, scored by the independent scorer (tests/tools/muge_score.py,
# written from the official rules) and compared with report/valid.json, the run's eval json and
# its summary.json; then the report's per-query parts (worst queries, recall by length and by
# keyword) recomputed from the independent per-query first-hit ranks.
score_a=("${scorer[@]}" --ref "$data/valid_texts.jsonl"
         --pred "$work/run_a/predictions/valid.jsonl")
"${score_a[@]}" --expect "$work/run_a/report/valid.json" --per-query "$work/a_valid.jsonl" \
  >/dev/null || fail "report/valid.json scores differ from the independent scorer's"
"${score_a[@]}" --expect "$work/run_a/eval/valid.json" >/dev/null \
  || fail "eval/valid.json differs from the independent scorer's"
"${score_a[@]}" --expect "$work/run_a/summary.json" >/dev/null \
  || fail "summary.json's valid scores differ from the independent scorer's"
$python - "$work/run_a/report/valid.json" "$data/valid_texts.jsonl" "$work/a_valid.jsonl" \
  "$work/run_a/predictions/valid.jsonl" 30 <<'EOF' || fail "report breakdowns are wrong"
import json, os, re, sys
import jieba
jieba.setLogLevel(60)
if os.environ.get("SHOPCLIP_JIEBA_DICT"):
    jieba.set_dictionary(os.environ["SHOPCLIP_JIEBA_DICT"])
report = json.load(open(sys.argv[1], encoding="utf-8"))
refs = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
per = {r["text_id"]: r for r in map(json.loads, open(sys.argv[3]))}
predicted = {r["text_id"]: r["image_ids"] for r in map(json.loads, open(sys.argv[4]))}
worst_n = int(sys.argv[5])
truth = {r["text_id"]: r for r in refs}
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)
def mr(q):  # a query's share of MeanRecall
    return (q["hit1"] + q["hit5"] + q["hit10"]) / 3 * 100
def recall(group):
    n = len(group)
    r = {f"r{k}": sum(q[f"hit{k}"] for q in group) / n * 100 for k in (1, 5, 10)}
    return {**r, "mean_recall": (r["r1"] + r["r5"] + r["r10"]) / 3, "queries": n}
def same(got, want, what):
    for key, value in want.items():
        check(abs(got[key] - value) < 1e-9, f"{what} {key}: report {got[key]!r}, "
              f"independent {value!r}")
# Worst queries: lowest per-query MeanRecall, then no hit before a late hit, then more
# ground-truth images, then query id; each with its predictions and first-hit rank.
order = sorted(per.values(), key=lambda q: (mr(q), -(q["first_hit"] or 11),
                                           -len(truth[q["text_id"]]["image_ids"]), q["text_id"]))
want = [q["text_id"] for q in order[:worst_n]]
got = [q["query_id"] for q in report["worst"]]
check(got == want, f"worst queries {got} != {want}")
for q in report["worst"]:
    mine, ref = per[q["query_id"]], truth[q["query_id"]]
    check(q["first_hit_rank"] == (mine["first_hit"] or 0) and abs(q["mean_recall"] - mr(mine))
          < 1e-9 and q["predicted"] == predicted[q["query_id"]]
          and q["image_ids"] == ref["image_ids"] and q["text"] == ref["text"],
          f"worst query {q['query_id']}: {q} vs independent {mine}")
# By length in code points: groups "A-B chars" (inclusive) and a last open-ended one.
covered = 0
for g in report["by_length"]:
    bounds = list(map(int, re.findall(r"\d+", g["group"])))
    low, high = (bounds[0], bounds[1]) if len(bounds) == 2 else (bounds[0], 10 ** 9)
    group = [per[r["text_id"]] for r in refs if low <= len(r["text"].strip()) <= high]
    check(group, f"by_length {g['group']}: no query has that length")
    if group:
        same(g, recall(group), f"by_length {g['group']}")
    covered += len(group)
check(covered == len(refs), f"by_length covers {covered} of {len(refs)} queries")
# By keyword: a group is the queries whose jieba words (cut HMM=False) hold the keyword; the
# keywords are the words in most queries.
holding = {}
for r in refs:
    for w in set(jieba.cut(r["text"], HMM=False)):
        holding.setdefault(w, []).append(r["text_id"])
for g in report["by_keyword"]:
    group = [per[q] for q in holding.get(g["group"], [])]
    check(group, f"by_keyword {g['group']}: no query holds that word")
    if group:
        same(g, recall(group), f"by_keyword {g['group']}")
check(report["by_keyword"], "no keyword groups")
if report["by_keyword"]:
    listed = {g["group"] for g in report["by_keyword"]}
    fewest = min(g["queries"] for g in report["by_keyword"])
    check([g["queries"] for g in report["by_keyword"]]
          == sorted((g["queries"] for g in report["by_keyword"]), reverse=True),
          "by_keyword is not most frequent first")
    richer = [w for w, q in holding.items()
              if w not in listed and len(q) > fewest and any(c.isalnum() for c in w)]
    check(not richer, f"words in more queries than a listed keyword are missing: {richer[:5]}")
if problems:
    print("the report differs from the independent per-query scores:", *problems, sep="\n  ")
    sys.exit(1)
print(f"report: worst {len(report['worst'])} queries, {len(report['by_length'])} length groups "
      f"and {len(report['by_keyword'])} keyword groups agree with the independent scorer")
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
"${scorer[@]}" --ref "$data/answers/test_texts.jsonl" --pred "$work/run_a/predictions/test.jsonl" \
  --expect "$work/run_a/report/test.json" >/dev/null \
  || fail "report/test.json scores differ from the independent scorer's"

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
# compare.json's per-run scores against the independent scorer on each run's predictions, and
# its gained/lost queries and MeanRecall difference against the independent per-query ranks.
for run in a b; do
  "${scorer[@]}" --ref "$data/valid_texts.jsonl" --pred "$work/run_$run/predictions/valid.jsonl" \
    --expect "$work/compare.json" --expect-path "$run.scores" \
    --per-query "$work/${run}_valid.jsonl" \
    >/dev/null || fail "compare.json's scores of run $run differ from the independent scorer's"
done
$python - "$work/compare.json" "$work/a_valid.jsonl" "$work/b_valid.jsonl" <<'EOF' \
  || fail "compare's query lists or difference are wrong"
import json, sys
c = json.load(open(sys.argv[1]))
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[2:4])
problems = []
def check(ok, what):
    if not ok:
        problems.append(what)
check([q["text_id"] for q in a] == [q["text_id"] for q in b], "the runs' queries differ")
for k in (1, 5, 10):
    lost = [x["text_id"] for x, y in zip(a, b) if x[f"hit{k}"] and not y[f"hit{k}"]]
    gained = [x["text_id"] for x, y in zip(a, b) if y[f"hit{k}"] and not x[f"hit{k}"]]
    for name, want in (("lost", lost), ("gained", gained)):
        got = sorted(c[name][f"at{k}"])
        check(got == want, f"{name} at {k}: compare {got}, independent {want}")
def mr(q):
    return (q["hit1"] + q["hit5"] + q["hit10"]) / 3 * 100
d = c["mean_recall_difference"]
mean = sum(mr(y) - mr(x) for x, y in zip(a, b)) / len(a)
check(abs(d["mean"] - mean) < 1e-9, f"MeanRecall difference {d['mean']!r}, independent {mean!r}")
check(d["pairs"] == len(a), f"pairs {d['pairs']} != {len(a)} queries")
if problems:
    print("compare.json differs from the independent per-query scores:", *problems, sep="\n  ")
    sys.exit(1)
print(f"compare: gained/lost queries at 1/5/10 and the MeanRecall difference {mean:+.2f} agree"
      " with the independent scorer")
EOF
check_page "$work/compare.html" compare --expect 'svg.chart>=2' --expect 'p.verdict==1' \
  --expect-text "paired bootstrap"
echo "E2E inspect pages OK"
