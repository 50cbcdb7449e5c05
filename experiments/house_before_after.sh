#!/usr/bin/env bash
# Issue 10's before/after record: the refactor must not change behaviour or speed. With the
# binary built at the commit before the refactor (BEFORE) and the current one (AFTER), on this
# machine, one after another (nothing else running):
#   1. identical results: prep of the tiny dataset by both, compared byte for byte with h5py;
#      the same fixed-length training run by both (configs/tiny.yaml) must end with identical
#      weights (weights-diff --tolerance 0) and identical valid predictions;
#   2. bench_small training speed: `bench train --config configs/bench_small.yaml --seconds 30`,
#      ROUNDS times each, alternating (before, after, before, ...), so that drift of the machine
#      falls on both;
#   3. the demo run: configs/demo.yaml (15-minute budget) trained by each, its valid MeanRecall,
#      steps and samples/s from summary.json.
# Writes experiments/results/house-<time>.jsonl (the machine first, then one line per figure)
# and a Markdown summary beside it.
# Usage: experiments/house_before_after.sh BEFORE_BINARY [AFTER_BINARY] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
before=$1
after=${2:-build/shopclip}
rounds=${3:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-house-XXXXXX")
trap 'rm -rf "$work"' EXIT
shopclip=$after
source experiments/record.sh
start_record house
note() {  # note JSON: appends one line
  echo "$1" >> "$out"
}

echo "== 1. identical results (tiny)"
"$after" data synth --scale tiny --out "$work/tiny" --seed 3 > /dev/null 2>&1
for side in before after; do
  binary=${!side}
  "$binary" prep --config configs/tiny.yaml --set "data.root=$work/tiny" \
    --set "data.prep_dir=$work/prep-$side" > /dev/null 2>&1
  "$binary" train --config configs/tiny.yaml --set "data.root=$work/tiny" \
    --set "data.prep_dir=$work/prep-$side" --set "run.dir=$work/tiny-$side" > /dev/null 2>&1
done
/usr/bin/python3 tests/e2e/compare_shards.py "$work/prep-before" "$work/prep-after"
"$after" weights-diff "$work/tiny-before/checkpoints/last.pt" "$work/tiny-after/checkpoints/last.pt" \
  --tolerance 0 | tee "$work/diff.txt"
cmp "$work/tiny-before/predictions/valid.jsonl" "$work/tiny-after/predictions/valid.jsonl"
note "$(python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
s = {side: json.load(open(f"{w}/tiny-{side}/summary.json")) for side in ("before", "after")}
print(json.dumps({"check": "identical", "prep_shards_equal": True, "weights_max_abs_diff": 0.0,
                  "valid_predictions_equal": True, "steps": s["after"]["steps"],
                  "mean_recall": {k: v["valid"]["mean_recall"] for k, v in s.items()}}))
PY
)"

echo "== 2. bench_small, $rounds rounds alternating"
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    binary=${!side}
    result=$("$binary" bench train --config configs/bench_small.yaml --seconds 30 2> /dev/null | tail -n 1)
    note "$(python3 -c 'import json,sys; print(json.dumps({"bench_small": sys.argv[1], "round": int(sys.argv[2]), "result": json.loads(sys.argv[3])}))' "$side" "$round" "$result")"
    echo "$side round $round: $result"
  done
done

echo "== 3. the demo run, each side"
[ -f datasets/demo/meta/synth.json ] || "$after" data synth --scale demo --out datasets/demo --seed 1
"$after" prep --config configs/demo.yaml > /dev/null 2>&1
for side in before after; do
  binary=${!side}
  "$binary" train --config configs/demo.yaml --set "run.dir=$work/demo-$side" > "$work/demo-$side.log" 2>&1
  note "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[2])); print(json.dumps({"demo": sys.argv[1], "steps": s["steps"], "samples_per_second": s["samples_per_second"], "valid": s["valid"]}))' "$side" "$work/demo-$side/summary.json")"
  tail -n 3 "$work/demo-$side.log"
done

python3 - "$out" "$before" "$after" > "${out%.jsonl}.md" <<'PY'
import json, statistics, sys
path, before, after = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
machine = rows[0]["machine"]
ident = next(r for r in rows if r.get("check") == "identical")
bench = {s: [r["result"] for r in rows if r.get("bench_small") == s] for s in ("before", "after")}
demo = {r["demo"]: r for r in rows if "demo" in r}
p = print
p(f"# Issue 10 (the house): before/after\n")
p(f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB; commit {machine['commit']}.")
p(f"Before: `{before}`; after: `{after}`. Command: `experiments/house_before_after.sh {before} {after}`.\n")
p("## Identical results (tiny dataset, fixed schedule)\n")
p(f"- prep shards: equal byte for byte (h5py); final weights: max |difference| 0 "
  f"(`weights-diff --tolerance 0`); valid predictions: identical files; {ident['steps']} steps, "
  f"MeanRecall {ident['mean_recall']['before']:.2f} / {ident['mean_recall']['after']:.2f}.\n")
p("## bench_small training speed (`bench train --config configs/bench_small.yaml --seconds 30`)\n")
p("| side | samples/s per round | mean | share of matmul (mean) |")
p("| --- | --- | --- | --- |")
for side in ("before", "after"):
    sps = [r["samples_per_s"] for r in bench[side]]
    share = statistics.mean(r["share_of_matmul"] for r in bench[side])
    p(f"| {side} | {', '.join(f'{x:.1f}' for x in sps)} | {statistics.mean(sps):.1f} | {100 * share:.1f} % |")
b, a = (statistics.mean(r["samples_per_s"] for r in bench[s]) for s in ("before", "after"))
spread = max(max(r["samples_per_s"] for r in bench[s]) - min(r["samples_per_s"] for r in bench[s]) for s in bench)
p(f"\nAfter / before: {a / b:.3f}; the largest spread between rounds of one side: {spread:.1f} samples/s.\n")
p("## Demo run (`train --config configs/demo.yaml`, 15-minute budget)\n")
p("| side | steps | samples/s | R@1 | R@5 | R@10 | MeanRecall |")
p("| --- | --- | --- | --- | --- | --- | --- |")
for side in ("before", "after"):
    d = demo[side]; v = d["valid"]
    p(f"| {side} | {d['steps']} | {d['samples_per_second']:.1f} | {v['r1']:.2f} | {v['r5']:.2f} | {v['r10']:.2f} | {v['mean_recall']:.2f} |")
PY
echo "wrote $out and ${out%.jsonl}.md"
