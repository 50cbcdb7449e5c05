# A Slurm cluster on the namespace hosts of netns_hosts.sh (source that first, then this):
# slurmctld and one slurmd per host, each host with its own host name (hI, a UTS namespace) and
# its own /tmp and /dev/shm (a mount namespace with fresh tmpfs), as separate machines would
# have. What the hosts share, like a cluster's shared file system, must live outside /tmp:
# the cluster folder, the data, the run directories.
#
#   slurm_up DIR N     writes DIR/slurm.conf for nodes h1..hN, starts munged (if not running),
#                      slurmctld on h1 and every slurmd, waits until all nodes are idle; clients
#                      (sbatch, scontrol) must run on a host: slurm_on_h1 COMMAND...
#   slurm_node_start I starts host I's slurmd (again, after cluster_kill_host I) and waits
#                      until the node is idle
# cluster_down stops all of it with the hosts' other processes.

SLURM_TEST_DIR=
SLURM_TEST_NODES=0

slurm_on_h1() { SLURM_CONF=$SLURM_TEST_DIR/slurm.conf cluster_on_h1 "$@"; }

# Waits until node hI is idle (up to 30 s).
slurm_wait_idle() {
  local state=""
  for _ in $(seq 150); do
    state=$(slurm_on_h1 sinfo -h -n "h$1" -o %T 2> /dev/null || true)
    [ "$state" = idle ] && return 0
    sleep 0.2
  done
  echo "slurm: node h$1 is '${state:-unknown}', not idle; logs in $SLURM_TEST_DIR" >&2
  tail -n 20 "$SLURM_TEST_DIR/slurmctld.log" "$SLURM_TEST_DIR/slurmd-h$1.log" >&2 || true
  return 1
}

slurm_node_start() {
  local i=$1
  ip netns exec "$SHOPCLIP_CLUSTER-h$i" unshare --uts --mount --propagation private sh -c \
    "hostname h$i && mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /dev/shm &&
     exec /usr/sbin/slurmd -f $SLURM_TEST_DIR/slurm.conf"
  slurm_wait_idle "$i"
}

slurm_up() {
  SLURM_TEST_DIR=$1
  SLURM_TEST_NODES=$2
  local i dir=$1 cpus=$(( $(nproc) > 1 ? $(nproc) / 2 : 1 ))
  mkdir -p "$dir/state"
  source "$CLUSTER_DIR/../slurm/munge.sh"
  start_munged
  {
    echo "# Written by tests/cluster/netns_slurm.sh: $2 nodes, one per namespace host."
    echo "ClusterName=shopclip-nodes"
    echo "SlurmctldHost=h1($CLUSTER_NET.1)"
    echo "SlurmctldPort=6817"
    echo "SlurmdPort=6818"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "StateSaveLocation=$dir/state"
    # %n: one spool folder, pid file and log per node (the hosts share this file system)
    echo "SlurmdSpoolDir=$dir/spool-%n"
    echo "SlurmdPidFile=$dir/slurmd-%n.pid"
    echo "SlurmdLogFile=$dir/slurmd-%n.log"
    echo "SlurmctldPidFile=$dir/slurmctld.pid"
    echo "SlurmctldLogFile=$dir/slurmctld.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "MpiDefault=none"
    echo "ReturnToService=2"
    echo "SlurmdTimeout=20"
    echo "InactiveLimit=0"
    echo "MinJobAge=600"
    for i in $(seq 1 "$2"); do
      echo "NodeName=h$i NodeAddr=$CLUSTER_NET.$i CPUs=$cpus RealMemory=1000 State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
  } > "$dir/slurm.conf"
  echo "CgroupPlugin=cgroup/v1" > "$dir/cgroup.conf"  # loaded by no plugin configured above
  ip netns exec "$SHOPCLIP_CLUSTER-h1" unshare --uts sh -c \
    "hostname h1 && exec /usr/sbin/slurmctld -f $dir/slurm.conf -i"
  for i in $(seq 1 "$2"); do slurm_node_start "$i"; done
}

# The JobState of job ID (PENDING, RUNNING, COMPLETED, FAILED, ...).
slurm_job_state() {
  slurm_on_h1 scontrol show job -o "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

# Waits (up to SECONDS) until job ID is in one of the states of the regular expression STATES.
slurm_wait_state() {
  local id=$1 states=$2 limit=$3 state=""
  for _ in $(seq $((limit * 2))); do
    state=$(slurm_job_state "$id")
    [[ "$state" =~ ^($states)$ ]] && return 0
    sleep 0.5
  done
  echo "slurm: job $id is '$state' after $limit s, not $states" >&2
  return 1
}
