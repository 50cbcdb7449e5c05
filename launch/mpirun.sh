#!/usr/bin/env bash
# Data-parallel job on the machines of an mpirun host list (or this machine alone):
# prep (images split across ranks) -> train -> evaluate valid -> write the test submission.
#
# Usage: launch/mpirun.sh RANKS CONFIG [--set key=value ...]
#   RANKS   processes in all; train.batch_size (the global batch) must be a multiple of it
#   CONFIG  a shopclip YAML config; --set overrides are passed to every step
# Environment:
#   SHOPCLIP       the binary (default build/shopclip)
#   MPIRUN_ARGS    extra mpirun arguments, e.g. "--hostfile hosts --map-by ppr:8:node" across
#                  machines, or "--oversubscribe" for more ranks than cores on one machine
#   SHOPCLIP_TRAIN_ARGS  extra options for `shopclip train` only, e.g. "--resume" to continue
#                  the run in run.dir from its last checkpoint (with any RANKS dividing the
#                  global batch)
#   SHOPCLIP_ABORT_GRACE_S  seconds mpirun gets to end the job after a rank on this machine was
#                  ended by the collective watchdog (default 20); then this script kills it
#                  (mpirun waits for ever for the daemon of a host that was cut off) and exits 75
#                  (launch/supervise.sh)
# With CUDA each rank takes the GPU numbered by its local rank; on CPU each rank gets
# cores / (ranks on the machine) threads.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks=${1:?usage: launch/mpirun.sh RANKS CONFIG [--set key=value ...]}
config=${2:?usage: launch/mpirun.sh RANKS CONFIG [--set key=value ...]}
shift 2
shopclip=${SHOPCLIP:-$root/build/shopclip}
# shellcheck disable=SC2206
launcher=(mpirun -np "$ranks" --bind-to none -x SHOPCLIP_FAILURE_MARK ${MPIRUN_ARGS:-})
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# shellcheck disable=SC2206
train_args=(${SHOPCLIP_TRAIN_ARGS:-})
source "$root/launch/supervise.sh"

supervise "${launcher[@]}" "$shopclip" prep --config "$config" "$@"
supervise "${launcher[@]}" "$shopclip" train --config "$config" "$@" "${train_args[@]}"
supervise "${launcher[@]}" "$shopclip" eval --config "$config" "$@" --split test
