#!/usr/bin/env bash
# Real Slurm: brings up a one-node cluster (local_cluster.sh), submits launch/slurm.sbatch with
# 2 tasks, once with mpirun inside the allocation and once with srun (PMIx), and checks that each
# job prepared, trained with 2 ranks, evaluated valid and wrote the test submission. Then a job
# whose rank 1 fails must end FAILED with a non-zero exit code. Last, `shopclip sweep --launcher
# slurm` submits a 2-trial job array whose tasks both finish.
# Usage: slurm_job.sh SHOPCLIP_BINARY SOURCE_DIR
# Needs root (slurmd runs as root) and slurm-wlm: exits 77 (CTest: skipped) without them, or
# fails when CI=true.
set -euo pipefail
shopclip=$(realpath "$1")
source_dir=$2
source "$source_dir/tests/skip_or_fail.sh"
if [ "$(id -u)" -ne 0 ]; then
  skip_or_fail "bringing up slurmd needs root"
fi
for tool in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged sbatch srun; do
  command -v "$tool" >/dev/null || skip_or_fail "$tool not found (launch/setup.sh installs slurm-wlm and munge)"
done
work=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-slurm-XXXXXX")
cluster=$work/cluster
cleanup() {
  bash "$source_dir/tests/slurm/local_cluster.sh" stop "$cluster" || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "SLURM FAILURE: $*" >&2
  for f in "$work"/*.out "$cluster"/slurmctld.log "$cluster"/slurmd.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; } >&2
  done
  exit 1
}
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$1" "$2"; }

bash "$source_dir/tests/slurm/local_cluster.sh" start "$cluster"
export SLURM_CONF=$cluster/slurm.conf
data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 >/dev/null 2>&1
export SHOPCLIP=$shopclip
cd "$work"

for launcher in mpirun srun; do
  echo "== sbatch -n 2 launch/slurm.sbatch with $launcher inside"
  run=$work/run-$launcher
  SHOPCLIP_LAUNCHER=$launcher sbatch --wait --ntasks=2 --ntasks-per-node=2 \
    --output="$work/$launcher.out" "$source_dir/launch/slurm.sbatch" \
    "$source_dir/configs/tiny.yaml" --set "data.root=$data" --set "run.dir=$run" \
    --set train.epochs=2 || fail "the $launcher job failed"
  grep -q "2 tasks, launcher $launcher" "$work/$launcher.out" || fail "the job did not start 2 tasks"
  grep -q "2 process(es) (mpi backend)" "$run/log.txt" || fail "training did not run 2 MPI ranks"
  [ "$(json_get "$run/eval/valid.json" '["success"]')" = True ] || fail "no valid evaluation"
  [ "$(wc -l < "$run/predictions/test.jsonl")" -eq 40 ] || fail "no test submission"
  "$shopclip" score --ref "$data/answers/test_texts.jsonl" --pred "$run/predictions/test.jsonl" \
    > "$work/score.json" || fail "the submission does not score"
  /usr/bin/python3 "$source_dir/tests/tools/muge_score.py" --ref "$data/answers/test_texts.jsonl" \
    --pred "$run/predictions/test.jsonl" --expect "$work/score.json" >/dev/null \
    || fail "the independent scorer disagrees with shopclip score"
  /usr/bin/python3 "$source_dir/tests/tools/muge_score.py" --ref "$data/valid_texts.jsonl" \
    --pred "$run/predictions/valid.jsonl" --expect "$run/eval/valid.json" >/dev/null \
    || fail "the independent scorer disagrees with the job's valid evaluation"
done

echo "== a rank that fails ends the Slurm job with a non-zero exit code"
if SHOPCLIP_LAUNCHER=srun SHOPCLIP_TRAIN_ARGS="--inject-failure 1:3" \
     sbatch --wait --ntasks=2 --output="$work/failing.out" "$source_dir/launch/slurm.sbatch" \
     "$source_dir/configs/tiny.yaml" --set "data.root=$data" --set "run.dir=$work/failing"; then
  fail "the job with a failing rank exited 0"
fi
grep -q "rank 1 ERROR\] injected failure" "$work/failing.out" || fail "the error was not logged"
echo "== a sweep as one job array: a task per trial"
"$shopclip" sweep --config "$source_dir/configs/tiny.yaml" --set "data.root=$data" \
  --set train.epochs=1 --axis train.lr=1e-3,2e-3 --launcher slurm --ranks 1 --array-limit 2 \
  --out "$work/sweep" > "$work/sweep.log" 2>&1 || { cat "$work/sweep.log"; fail "sweep submission failed"; }
grep -q "#SBATCH --array=0-1%2" "$work/sweep/sweep.sbatch" || fail "not a 2-task array"
array_job=$(cat "$work/sweep/sbatch.log")
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$array_job" 2> /dev/null)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h -j "$array_job")" ] || fail "the array job did not end"
"$shopclip" sweep --status "$work/sweep" > "$work/sweep-status.md" 2> /dev/null
cat "$work/sweep-status.md"
[ "$(grep -c "| 1/1 | .* | done |" "$work/sweep-status.md")" -eq 2 ] \
  || { cat "$work"/sweep/trials/slurm-*.out; fail "the sweep's trials did not both finish"; }
echo "SLURM OK"
