# Several "hosts" on this machine, for multi-host tests. Sourced by the tests in this folder.
#
# cluster_up N makes hosts h1..hN: one network namespace each ("$SHOPCLIP_CLUSTER-hI", loopback
# up, address 10.231.0.I/24 on a veth), all plugged into a bridge that lives in a namespace of its
# own ("$SHOPCLIP_CLUSTER-sw"), so nothing is added to this machine's own network: the hosts
# reach each other and nothing else. /etc/netns/<namespace>/hosts (which `ip netns exec`
# mounts over /etc/hosts) names them. cluster_down removes all of it, processes first; call it
# from an EXIT trap so that a failing test leaves nothing behind.
#
# cluster_mpirun ARGS... runs mpirun on h1 with Open MPI's TCP transport pinned to the test
# network and tests/cluster/netns_rsh.sh as its rsh agent, so `--host h1,h2` starts ranks in the
# hosts' namespaces.

SHOPCLIP_CLUSTER=${SHOPCLIP_CLUSTER:-sc$$}
export SHOPCLIP_CLUSTER
CLUSTER_NET=10.231.0
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cluster_up() {
  local n=$1 i ns
  ip netns add "$SHOPCLIP_CLUSTER-sw"
  ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set lo up
  ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link add br0 type bridge
  ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set br0 up
  for i in $(seq 1 "$n"); do
    ns=$SHOPCLIP_CLUSTER-h$i
    ip netns add "$ns"
    # Created here, moved at once: the pair never carries traffic in this machine's namespace.
    ip link add "$SHOPCLIP_CLUSTER-e$i" type veth peer name "$SHOPCLIP_CLUSTER-p$i"
    ip link set "$SHOPCLIP_CLUSTER-e$i" netns "$ns"
    ip link set "$SHOPCLIP_CLUSTER-p$i" netns "$SHOPCLIP_CLUSTER-sw"
    ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set "$SHOPCLIP_CLUSTER-p$i" master br0
    ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set "$SHOPCLIP_CLUSTER-p$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$CLUSTER_NET.$i/24" dev "$SHOPCLIP_CLUSTER-e$i"
    ip netns exec "$ns" ip link set "$SHOPCLIP_CLUSTER-e$i" up
    mkdir -p "/etc/netns/$ns"
    {
      echo "127.0.0.1 localhost"
      for j in $(seq 1 "$n"); do echo "$CLUSTER_NET.$j h$j"; done
    } > "/etc/netns/$ns/hosts"
  done
}

cluster_down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$SHOPCLIP_CLUSTER-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
}

# Cuts host I off the network (its link to the bridge goes down) / restores it.
cluster_cut() { ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set "$SHOPCLIP_CLUSTER-p$1" down; }
# Restoring waits until h1 and hI reach each other again (at most 20 s): for about a second
# after the port comes up its packets are dropped (measured: a connection attempt right after
# took 982 ms, one retransmission), and neighbour entries the cut left unresolved can fail a
# connection outright; an mpirun started in that window once failed to start its daemon on hI
# ("unable to complete a TCP connection"). A cluster's operator also waits for the network
# before restarting a job.
cluster_restore() {
  local ns
  ip netns exec "$SHOPCLIP_CLUSTER-sw" ip link set "$SHOPCLIP_CLUSTER-p$1" up
  for ns in "$SHOPCLIP_CLUSTER-h1" "$SHOPCLIP_CLUSTER-h$1"; do ip netns exec "$ns" ip neigh flush all; done
  for _ in $(seq 200); do
    cluster_reaches 1 "$1" && cluster_reaches "$1" 1 && return 0
    sleep 0.1
  done
  echo "cluster_restore: h1 and h$1 still do not reach each other 20 s after the link came up" >&2
  return 1
}
# cluster_reaches I J: whether host I gets an answer from host J: nothing listens on port 9 of a
# test host, so a reachable host refuses the connection at once; an unreachable one does not.
# (No pipe into grep: under `set -o pipefail` the refused connection's own status would fail it.)
cluster_reaches() {
  local answer
  answer=$(ip netns exec "$SHOPCLIP_CLUSTER-h$1" timeout 1 bash -c \
    "exec 3<>/dev/tcp/$CLUSTER_NET.$2/9" 2>&1) || true
  [[ $answer == *refused* ]]
}
# Kills every process left on host I (what a cut-off host's processes would be after a reboot).
cluster_kill_host() { ip netns pids "$SHOPCLIP_CLUSTER-h$1" | xargs -r kill -9 2>/dev/null || true; }

# The mpirun options for these hosts (also for launch/mpirun.sh's MPIRUN_ARGS).
CLUSTER_MPI_ARGS="--mca plm_rsh_agent $CLUSTER_DIR/netns_rsh.sh --mca oob_tcp_if_include $CLUSTER_NET.0/24 --mca btl_tcp_if_include $CLUSTER_NET.0/24 --mca btl tcp,self"

# Runs COMMAND... on h1 (where mpirun must run to reach the hosts), within CLUSTER_TIMEOUT.
cluster_on_h1() {
  ip netns exec "$SHOPCLIP_CLUSTER-h1" timeout "${CLUSTER_TIMEOUT:-600}" "$@"
}

cluster_mpirun() {
  # shellcheck disable=SC2086
  cluster_on_h1 mpirun $CLUSTER_MPI_ARGS "$@"
}

# Skips (or, with CI=true, fails) unless this process may make namespaces.
cluster_require() {
  [ "$(id -u)" -eq 0 ] || skip_or_fail "needs root to make network namespaces"
  command -v ip > /dev/null || skip_or_fail "needs ip (iproute2)"
  ip netns add "$SHOPCLIP_CLUSTER-probe" 2>/dev/null || skip_or_fail "cannot make network namespaces here"
  ip netns del "$SHOPCLIP_CLUSTER-probe"
}
