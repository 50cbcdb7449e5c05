#!/usr/bin/env bash
# A private one-node Slurm cluster on this machine, from Debian's slurm-wlm and munge: slurmctld
# and slurmd on this host, with their configuration, state, spool and logs in one directory and
# their own ports, so a system cluster (if any) is left alone. Addresses are 127.0.0.1, so the
# host name need not resolve. Must run as root (slurmd does).
#
#   local_cluster.sh start DIR   writes DIR/slurm.conf, starts munged (if not running), slurmctld
#                                and slurmd, waits until the node is idle; clients then need
#                                SLURM_CONF=DIR/slurm.conf
#   local_cluster.sh stop DIR    stops the daemons started by `start` (munged is left running)
set -euo pipefail
action=${1:?usage: local_cluster.sh start|stop DIR}
dir=${2:?usage: local_cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
export SLURM_CONF=$conf

stop() {
  for daemon in slurmd slurmctld; do
    local pidfile=$dir/$daemon.pid
    local pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"
    fi
  done
}

if [ "$action" = stop ]; then stop; exit 0; fi
[ "$action" = start ] || { echo "unknown action '$action'" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "local_cluster.sh: slurmd must run as root" >&2; exit 2; }

source "$(dirname "${BASH_SOURCE[0]}")/munge.sh"
start_munged

node=$(hostname -s)
cpus=$(nproc)
memory_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
port=${SHOPCLIP_SLURM_PORT:-16817}
mkdir -p "$dir/state" "$dir/spool"
cat > "$conf" <<CONF
# Written by tests/slurm/local_cluster.sh: a one-node test cluster.
ClusterName=shopclip-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mib State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
# Slurm 22.05 has no "disabled" cgroup plugin; v1 is only loaded by cgroup-based plugins,
# which the configuration above does not use.
echo "CgroupPlugin=cgroup/v1" > "$dir/cgroup.conf"

stop
/usr/sbin/slurmctld -f "$conf" -i
/usr/sbin/slurmd -f "$conf"
for _ in $(seq 100); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && { echo "slurm: node $node idle ($cpus CPUs), SLURM_CONF=$conf"; exit 0; }
  sleep 0.2
done
echo "slurm: node $node did not become idle (state '${state:-unknown}'); logs in $dir" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
