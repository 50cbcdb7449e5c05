#!/bin/sh
# Open MPI's rsh agent for the namespace hosts of netns_hosts.sh: `netns_rsh.sh [OPTIONS] HOST
# COMMAND...` runs COMMAND through a shell in HOST's network namespace ($SHOPCLIP_CLUSTER-HOST),
# as ssh would on a real host. Options Open MPI passes for ssh (e.g. -x) are ignored.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
exec ip netns exec "$SHOPCLIP_CLUSTER-$host" /bin/sh -c "$*"
