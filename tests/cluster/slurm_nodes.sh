#!/usr/bin/env bash
# A two-node Slurm cluster for real (netns_slurm.sh: one slurmd per namespace host, Open MPI over
# TCP between them), one task per node:
#   sbatch --nodes=2 --ntasks-per-node=1 launch/slurm.sbatch runs prep, train and eval with srun
#   and with mpirun inside the allocation, and both end with the same weights;
#   a node's slurmd and tasks killed mid-epoch: the job ends non-zero with the cause in its
#   output; with requeue (sbatch --requeue, SHOPCLIP_MAX_RESTARTS) and the node back, the job
#   resumes from its last time-based checkpoint and completes with the weights of an
#   uninterrupted run.
# Usage: slurm_nodes.sh SHOPCLIP_BINARY SOURCE_DIR     (needs root, slurm-wlm, iproute2)
set -euo pipefail
shopclip=$(realpath "$1")
source_dir=$2
source "$source_dir/tests/skip_or_fail.sh"
source "$source_dir/tests/cluster/netns_hosts.sh"
source "$source_dir/tests/cluster/netns_slurm.sh"
cluster_require
for tool in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged sbatch unshare; do
  command -v "$tool" > /dev/null || skip_or_fail "$tool not found (launch/setup.sh installs it)"
done
# Shared by the hosts like a cluster file system: not under /tmp, which each host has its own.
work=$(mktemp -d "${SHOPCLIP_SHARED_TMP:-/var/tmp}/shopclip-nodes-XXXXXX")
trap 'cluster_down; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
fail() {
  echo "SLURM NODES FAILURE: $*" >&2
  for f in "$work"/*.out "$work/slurm/slurmctld.log" "$work"/slurm/slurmd-*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 25 "$f"; } >&2
  done
  exit 1
}
cluster_up 2
slurm_up "$work/slurm" 2 || fail "the cluster did not come up"
echo "== [$SECONDS s] 2 nodes up: $(slurm_on_h1 sinfo -h -N -o '%N:%T' | tr '\n' ' ')"

data=$work/data
"$shopclip" data synth --scale tiny --out "$data" --seed 3 > /dev/null 2>&1
# Jobs see the TCP transport pinned to the test network (sbatch passes the environment on).
export OMPI_MCA_btl=tcp,self OMPI_MCA_btl_tcp_if_include=$CLUSTER_NET.0/24 \
  OMPI_MCA_oob_tcp_if_include=$CLUSTER_NET.0/24 OMP_NUM_THREADS=1 SHOPCLIP=$shopclip
settings=(--set "data.root=$data" --set train.epochs=20 --set dist.timeout_s=8
  --set train.checkpoint_every_minutes=0.002)
submit() {  # submit NAME [sbatch options...]: the job's id; output in $work/NAME.out
  local name=$1
  shift
  slurm_on_h1 sbatch --parsable --nodes=2 --ntasks-per-node=1 --chdir="$work" \
    --output="$work/$name.out" "$@" "$source_dir/launch/slurm.sbatch" \
    "$source_dir/configs/tiny.yaml" "${settings[@]}" --set "run.dir=$work/$name"
}

for launcher in srun mpirun; do
  echo "== [$SECONDS s] sbatch --nodes=2 --ntasks-per-node=1 with $launcher inside"
  id=$(SHOPCLIP_LAUNCHER=$launcher submit "$launcher")
  slurm_wait_state "$id" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 300 || fail "job $id hung"
  [ "$(slurm_job_state "$id")" = COMPLETED ] || fail "the $launcher job ended $(slurm_job_state "$id")"
  grep -q "on h\[1-2\], 2 tasks, launcher $launcher" "$work/$launcher.out" \
    || fail "the $launcher job did not run on both nodes"
  grep -q "2 process(es) (mpi backend)" "$work/$launcher/log.txt" || fail "not 2 MPI ranks"
  [ "$(wc -l < "$work/$launcher/predictions/test.jsonl")" -eq 40 ] || fail "no test submission"
done
"$shopclip" weights-diff "$work/srun/checkpoints/last.pt" "$work/mpirun/checkpoints/last.pt" \
  --tolerance 0 || fail "srun and mpirun inside the allocation ended with other weights"

# kill_node_mid_epoch NAME ID: waits until job ID's run NAME has saved a checkpoint by time
# (inside an epoch), then kills every process of node h2 (slurmd, slurmstepd, orted, the rank).
# Sets saved_step and killed_at.
kill_node_mid_epoch() {
  local line=""
  for _ in $(seq 1200); do
    line=$(grep -o "checkpoint: step [0-9]* saved" "$work/$1/log.txt" 2> /dev/null | head -n 1 || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || fail "job $2 never saved a checkpoint by time"
  cluster_kill_host 2
  killed_at=$SECONDS
  saved_step=$(awk '{print $3}' <<< "$line")
  echo "killed node h2 after the checkpoint at step $saved_step"
}

echo "== [$SECONDS s] node h2's slurmd and tasks killed mid-epoch: the job ends non-zero"
id=$(SHOPCLIP_LAUNCHER=srun submit killed --no-requeue)
kill_node_mid_epoch killed "$id"
slurm_wait_state "$id" "FAILED|CANCELLED|NODE_FAIL|TIMEOUT|COMPLETED" 120 || fail "the job did not end"
state=$(slurm_job_state "$id")
echo "job ended $state $((SECONDS - killed_at)) s after the kill"
[ $((SECONDS - killed_at)) -le 60 ] || fail "the job took over 60 s to end"
[ "$state" != COMPLETED ] || fail "the job completed without node h2"
grep -Eq "collective watchdog|ORTE|MPI_ABORT|lost|terminated|hung up" "$work/killed.out" \
  || fail "the job's output does not name the cause"
slurm_node_start 2 || fail "node h2 did not come back"

echo "== [$SECONDS s] the same with requeue: the job resumes and completes"
id=$(SHOPCLIP_LAUNCHER=mpirun SHOPCLIP_MAX_RESTARTS=2 submit requeued --requeue)
kill_node_mid_epoch requeued "$id"
for _ in $(seq 120); do
  grep -q "requeueing the job" "$work/requeued.out" 2> /dev/null && break
  sleep 0.5
done
grep -q "requeueing the job (restart 1" "$work/requeued.out" || fail "the job did not requeue itself"
echo "job requeued itself $((SECONDS - killed_at)) s after the kill"
slurm_node_start 2 || fail "node h2 did not come back"
# Slurm holds a requeued batch job back for about two minutes (its begin time); not here.
slurm_on_h1 scontrol update jobid="$id" StartTime=now || fail "could not move the job's begin time"
slurm_wait_state "$id" "COMPLETED|FAILED|CANCELLED" 400 || fail "the requeued job did not end"
[ "$(slurm_job_state "$id")" = COMPLETED ] || fail "the requeued job ended $(slurm_job_state "$id")"
grep -q "(restart 1) on h\[1-2\]" "$work/requeued.out" || fail "no second attempt in the output"
# The first restart must resume at or after the checkpoint. (Slurm may also declare the returning
# node failed a while after it restarted and requeue the job once more: a second resume, from a
# later checkpoint, which SHOPCLIP_MAX_RESTARTS=2 allows.)
resumed_step=$(sed -n 's/.*resumed from .*: epoch [0-9]* step \([0-9]*\) .*/\1/p' \
  "$work/requeued/log.txt" | head -n 1)
[ -n "$resumed_step" ] && [ "$resumed_step" -ge "$saved_step" ] \
  || fail "the second attempt resumed at step '${resumed_step}', before the checkpoint at $saved_step"
"$shopclip" weights-diff "$work/srun/checkpoints/last.pt" "$work/requeued/checkpoints/last.pt" \
  --tolerance 0 || fail "the requeued job ended with other weights than an uninterrupted run"
echo "SLURM NODES OK"
