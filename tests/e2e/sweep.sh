#!/usr/bin/env bash
# `shopclip sweep` end to end on the tiny dataset: a sweep file with a grid axis and two seeds
# runs as local trials; interrupted during its second trial and run again, it skips the finished
# trial and completes the rest; the results table lists every configuration with its seeds
# pooled, and its numbers are each trial's own summary, with the difference from the baseline
# configuration and its bootstrap interval; a changed sweep file is refused naming
# the change; a bad key is refused before anything runs, naming the trial; early stopping
# stops exactly the trials the successive-halving rule names; --axis with the
# mpirun launcher runs a 2-rank trial; --status prints the table; results.html passes the
# headless-Chromium page check.
# Usage: sweep.sh SHOPCLIP_BINARY SOURCE_DIR
set -euo pipefail
shopclip=$1
source_dir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-sweep-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "SWEEP E2E FAILURE: $*" >&2; exit 1; }
python=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 > /dev/null 2>&1
cat > "$work/sweep.yaml" <<YAML
base:
  config: $source_dir/configs/tiny.yaml
  set: [data.root=$data, train.epochs=2, train.batch_size=128, run.threads=1]
grid:
  train.lr: [1.0e-3, 3.0e-3]
seeds: [1, 2]
YAML

echo "== a bad key is refused before anything runs"
sed 's/train.lr:/train.learning_rate:/' "$work/sweep.yaml" > "$work/bad.yaml"
if "$shopclip" sweep "$work/bad.yaml" --out "$work/bad" 2> "$work/bad.log"; then
  fail "a sweep with an unknown key ran"
fi
grep -q "trial 0 (000-learning_rate=1.0e-3-seed=1).*train.learning_rate" "$work/bad.log" \
  || { cat "$work/bad.log"; fail "the refusal does not name the trial and the key"; }
[ ! -d "$work/bad/trials" ] || fail "the refused sweep created trial directories"

echo "== the example sweeps in configs/sweeps/ expand and validate"
for example in "$source_dir"/configs/sweeps/*.yaml; do
  "$shopclip" sweep "$example" --out "$work/example" --dry-run > "$work/example.txt" 2> /dev/null \
    || fail "$example does not validate"
  [ "$(grep -c ' train ' "$work/example.txt")" -ge 4 ] || fail "$example: fewer than 4 trials"
done

echo "== --dry-run prints one train command per trial"
"$shopclip" sweep "$work/sweep.yaml" --out "$work/s" --dry-run 2> /dev/null > "$work/dry.txt"
[ "$(grep -c ' train ' "$work/dry.txt")" -eq 4 ] || { cat "$work/dry.txt"; fail "not 4 trials"; }
grep -q -- "--set train.lr=3.0e-3 --set run.seed=2 --set run.dir=$work/s/trials/003-lr=3.0e-3-seed=2" \
  "$work/dry.txt" || fail "trial 3's command is not as expected"
[ ! -d "$work/s" ] || fail "--dry-run created the sweep directory"

echo "== interrupted during its second trial, then run again"
setsid "$shopclip" sweep "$work/sweep.yaml" --out "$work/s" > "$work/first.log" 2>&1 &
sweep_pid=$!
for _ in $(seq 600); do
  [ -f "$work/s/trials/001-lr=1.0e-3-seed=2/log.txt" ] && break
  sleep 0.1
done
[ -f "$work/s/trials/000-lr=1.0e-3-seed=1/summary.json" ] || fail "trial 0 did not finish first"
kill -TERM -- "-$sweep_pid"  # the sweep and its running trial
wait "$sweep_pid" 2> /dev/null || true
[ ! -f "$work/s/trials/003-lr=3.0e-3-seed=2/summary.json" ] || fail "the interruption came too late"
"$shopclip" sweep "$work/sweep.yaml" --out "$work/s" --parallel 2 > "$work/second.log" 2>&1 \
  || { cat "$work/second.log"; fail "the resumed sweep failed"; }
grep -q "trial 000-lr=1.0e-3-seed=1 already done" "$work/second.log" \
  || fail "the finished trial was not skipped"
for t in 000-lr=1.0e-3-seed=1 001-lr=1.0e-3-seed=2 002-lr=3.0e-3-seed=1 003-lr=3.0e-3-seed=2; do
  [ -f "$work/s/trials/$t/summary.json" ] || fail "trial $t has no summary"
done
[ "$(grep -c "run directory" "$work/s/trials/000-lr=1.0e-3-seed=1/log.txt")" -eq 1 ] \
  || fail "the finished trial was run again"

echo "== the results table pools the seeds of each configuration"
$python - "$work/s" <<'PY' || fail "results.csv does not match the trials' summaries"
import csv, json, statistics, sys
root = sys.argv[1]
rows = list(csv.DictReader(open(f"{root}/results.csv")))
assert [r["configuration"] for r in rows] == ["train.lr=1.0e-3", "train.lr=3.0e-3"], rows
for row, (a, b) in zip(rows, [("000-lr=1.0e-3-seed=1", "001-lr=1.0e-3-seed=2"),
                              ("002-lr=3.0e-3-seed=1", "003-lr=3.0e-3-seed=2")]):
    recalls = [json.load(open(f"{root}/trials/{t}/summary.json"))["valid"]["mean_recall"] for t in (a, b)]
    assert row["seeds_done"] == "2" and row["status"] == "done", row
    assert abs(float(row["mean_recall"]) - statistics.mean(recalls)) < 1e-3, (row, recalls)
    assert abs(float(row["mean_recall_sd"]) - statistics.stdev(recalls)) < 1e-3, (row, recalls)
# Against the baseline (row 0): the bootstrap's mean difference is the difference of the pooled
# MeanRecalls (per-query recall averaged over seeds), inside its own interval.
base, other = rows
assert base["vs_baseline"] == "", base
difference = float(other["vs_baseline"])
assert abs(difference - (float(other["mean_recall"]) - float(base["mean_recall"]))) < 1e-3, other
assert float(other["vs_baseline_ci_low"]) <= difference <= float(other["vs_baseline_ci_high"]), other
assert 0 < float(other["vs_baseline_p"]) <= 1, other
PY
"$shopclip" sweep --status "$work/s" 2> /dev/null > "$work/status.md"
grep -q "| train.lr=3.0e-3 | 2/2 |" "$work/status.md" || { cat "$work/status.md"; fail "--status"; }

echo "== a changed sweep file is refused, naming the change"
sed 's/seeds: \[1, 2\]/seeds: [1, 2, 3]/' "$work/sweep.yaml" > "$work/changed.yaml"
if "$shopclip" sweep "$work/changed.yaml" --out "$work/s" 2> "$work/changed.log"; then
  fail "a changed sweep ran in the old directory"
fi
grep -q "seeds: \[1, 2\] -> \[1, 2, 3\]" "$work/changed.log" \
  || { cat "$work/changed.log"; fail "the change is not named"; }

echo "== early stopping: successive halving at a milestone of 9 steps, eta 2"
cat > "$work/halving.yaml" <<YAML
base:
  config: $source_dir/configs/tiny.yaml
  set: [data.root=$data, train.epochs=15, train.batch_size=128, run.threads=1]
grid:
  train.lr: [1.0e-6, 3.0e-3, 1.0e-5, 2.0e-3]
early_stop: {eta: 2, unit: steps, milestones: [9]}
YAML
"$shopclip" sweep "$work/halving.yaml" --out "$work/h" > "$work/halving.log" 2>&1 \
  || { cat "$work/halving.log"; fail "the early-stopping sweep failed"; }
$python - "$work/h" <<'PY' || fail "early stopping did not follow the rule"
import glob, json, os, sys
root = sys.argv[1]
trials = sorted(glob.glob(f"{root}/trials/*"))
assert len(trials) == 4, trials
rung, expected, stopped = [], [], []
for t in trials:  # one after another: the rule saw them in this order
    evals = []
    for line in open(f"{t}/metrics.jsonl"):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the SIGTERM that stopped the trial
            continue
        if row.get("type") == "eval":
            evals.append(row)
    score = next(e["mean_recall"] for e in evals if e["step"] >= 9)
    rung.append(score)
    keep = max(1, len(rung) // 2)
    expected.append(len(rung) >= 2 and score < sorted(rung, reverse=True)[keep - 1])
    stopped.append(os.path.exists(f"{t}/early_stopped"))
    if stopped[-1]:
        assert len(evals) < 15, (t, len(evals))  # it did not run to the end
        assert open(f"{t}/early_stopped").read().startswith("stopped early at 9 steps"), t
    else:
        assert os.path.exists(f"{t}/summary.json"), t
print("rung scores", rung, "stopped", stopped)
assert stopped == expected, (stopped, expected)
assert any(stopped), "no trial was stopped"
PY
grep -q "stopped early at 9 steps" "$work/h/results.md" || fail "the table does not show the stop"
"$shopclip" sweep "$work/halving.yaml" --out "$work/h" > "$work/halving2.log" 2>&1
[ "$(grep -c "already done" "$work/halving2.log")" -eq 4 ] || fail "a rerun did not skip all 4 trials"

echo "== --axis with the mpirun launcher"
"$shopclip" sweep --config "$source_dir/configs/tiny.yaml" --set "data.root=$data" \
  --set train.epochs=1 --set train.batch_size=128 --axis train.lr=2e-3 \
  --launcher mpirun --ranks 2 --out "$work/m" > "$work/mpirun.log" 2>&1 \
  || { cat "$work/mpirun.log"; fail "the mpirun sweep failed"; }
grep -q "2 process(es)" "$work/m/trials/000-lr=2e-3/log.txt" || fail "the trial did not run 2 ranks"

echo "== results.html in headless Chromium"
source "$source_dir/tests/skip_or_fail.sh"
if ! command -v chromium > /dev/null || ! $python -c "import websocket" 2> /dev/null; then
  skip_or_fail "chromium and python3-websocket are needed to load the page (launch/setup.sh)"
fi
$python "$source_dir/tests/browser/check_page.py" "$work/s/results.html" \
  --screenshot "$work/results.png" --expect 'table.data tr>=3' \
  --expect 'svg.chart[data-chart="bar"]==1' --expect-text "train.lr=3.0e-3" \
  --expect-text "valid MeanRecall by train.lr" || fail "results.html failed in the browser"
echo "SWEEP OK"
