# Sourced by launch/mpirun.sh and launch/slurm.sbatch: runs one step of a job (an mpirun or srun
# command line) under supervision.
#
#   supervise COMMAND...
#
# A rank ended by its collective watchdog (dist.timeout_s) leaves a mark file named by
# SHOPCLIP_FAILURE_MARK (exported here; mpirun must forward it with -x, srun does by itself). The
# launcher normally ends the job then, but not always: mpirun waits for ever for the daemon of a
# host that was cut off, and srun for the step of a node whose slurmd died until Slurm declares
# the node down. So once a mark exists, the launcher gets SHOPCLIP_ABORT_GRACE_S seconds
# (default 20) to end; then it is killed and supervise returns 75, the watchdog's status.
# Only ranks on this machine can leave a mark (the folder is local); a rank elsewhere that times
# out ends the job through the launcher as usual.
# INT and TERM (Ctrl-C, Slurm's scancel) are passed on to the launcher, which runs in the
# background.

shopclip_marks=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-job-XXXXXX")
trap 'rm -rf "$shopclip_marks"' EXIT
export SHOPCLIP_FAILURE_MARK=$shopclip_marks/failed

supervise() {
  local grace=${SHOPCLIP_ABORT_GRACE_S:-20}
  "$@" &
  local job=$! marked_at="" status=0
  trap 'kill -TERM "$job" 2>/dev/null' INT TERM
  while kill -0 "$job" 2>/dev/null; do
    if [ -z "$marked_at" ] && compgen -G "$shopclip_marks/failed.*" > /dev/null; then
      marked_at=$SECONDS
    fi
    if [ -n "$marked_at" ] && [ $((SECONDS - marked_at)) -ge "$grace" ]; then
      echo "supervise: a rank was ended by the collective watchdog ${grace} s ago and $1 has" \
        "not ended the job (a host cut off?); killing $1" >&2
      kill -9 "$job" 2>/dev/null || true
      wait "$job" 2>/dev/null || true
      trap - INT TERM
      return 75
    fi
    sleep 1
  done
  wait "$job" || status=$?
  trap - INT TERM
  return "$status"
}
