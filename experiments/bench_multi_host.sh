#!/usr/bin/env bash
# Issue 18's figures: bench_small trained by 2 ranks (1 thread each, batch 256 per rank) on one
# host (Open MPI's shared memory) and on two hosts over TCP (the namespace hosts of
# tests/cluster/netns_hosts.sh), the link between them unshaped (a veth: memory speed) and shaped
# with tc to 1 Gb/s and 100 Mb/s. Per figure: step time, the share of the step inside
# collectives, the payload handed to the collectives, the bytes the ring cost model says a rank
# sends, and the bytes host h1 really sent (its interface's counter, over the whole command:
# 3 warm-up steps included, so per step it is divided by steps + 3). Then the cost model on paper
# (experiments/comm_model.py). Needs root (namespaces, tc).
# Usage: experiments/bench_multi_host.sh [SECONDS_PER_MEASUREMENT (default 30)]
# Appends to experiments/results/multihost-<date>.jsonl and writes a Markdown table beside it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=$(realpath "${SHOPCLIP_BINARY:-build/shopclip}")
seconds=${1:-30}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source tests/skip_or_fail.sh
source tests/cluster/netns_hosts.sh
cluster_require
trap cluster_down EXIT
cluster_up 2
source experiments/record.sh
start_record multihost

bench=("$shopclip" bench train --config "$root/configs/bench_small.yaml" --seconds "$seconds"
  --threads 1)
tx_bytes() { ip netns exec "$SHOPCLIP_CLUSTER-h1" cat "/sys/class/net/$SHOPCLIP_CLUSTER-e1/statistics/tx_bytes"; }
# on_link RATE PLACEMENT: runs bench_small with 2 ranks (PLACEMENT one-host or two-hosts), the
# hosts' links shaped to RATE (tc tbf; "none" = unshaped); prints its JSON with the link, the
# placement and h1's bytes sent per step added.
on_link() {
  local rate=$1 placement=$2 i before result
  for i in 1 2; do
    ip netns exec "$SHOPCLIP_CLUSTER-h$i" tc qdisc del dev "$SHOPCLIP_CLUSTER-e$i" root 2> /dev/null || true
    if [ "$rate" != none ]; then
      ip netns exec "$SHOPCLIP_CLUSTER-h$i" tc qdisc add dev "$SHOPCLIP_CLUSTER-e$i" root tbf \
        rate "$rate" burst 1mb latency 200ms
    fi
  done
  before=$(tx_bytes)
  if [ "$placement" = one-host ]; then
    result=$(cluster_on_h1 mpirun -np 2 --bind-to none "${bench[@]}" 2> /dev/null | tail -n 1)
  else
    result=$(cluster_mpirun --host h1,h2 -np 2 --bind-to none "${bench[@]}" 2> /dev/null | tail -n 1)
  fi
  python3 -c 'import json,sys
r = json.loads(sys.argv[1]); r["link"] = sys.argv[2]; r["placement"] = sys.argv[3]
r["h1_wire_mb_sent_per_step"] = int(sys.argv[4]) / 1e6 / (r["steps"] + 3)
print(json.dumps(r))' "$result" "$rate" "$placement" $(( $(tx_bytes) - before ))
}

# This VM's speed drifts over minutes: the set-ups alternate, twice.
for round in 1 2; do
  record on_link none one-host
  for rate in none 1gbit 100mbit; do record on_link "$rate" two-hosts; done
done

python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
m = lines[0]["machine"]
print(f"# Two hosts against one host ({sys.argv[1]})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']}, {m['mpi']}, "
      f"commit {m['commit']}. Hosts are network namespaces on this one machine (a veth pair each, a bridge), "
      "so a link's only limit is the tc shaping named; both ranks share the machine's 2 cores either way.\n")
print("bench_small, 2 ranks x 1 thread, batch 256 per rank (global 512), random inputs.\n")
print("| placement | link | step ms | samples/s | in collectives | collective time ms | payload MB/step (all-reduce / all-gather / reduce-scatter) | ring model MB sent/step | h1 sent MB/step (wire) | ring model time at the link rate ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
rates = {"1gbit": 1e9, "100mbit": 1e8}
for l in lines[1:]:
    r = l["result"]
    model_ms = f"{1000 * r['ring_mb_sent_per_step'] * 8e6 / rates[r['link']]:.0f}" if r["link"] in rates else "-"
    print(f"| {r['placement']} | {r['link']} | {r['step_ms']:.0f} | {r['samples_per_s']:.1f} | {100 * r['communication_share']:.1f} % | "
          f"{r['step_ms'] * r['communication_share']:.0f} | {r['all_reduce_mb_per_step']:.2f} / {r['all_gather_mb_per_step']:.2f} / "
          f"{r['reduce_scatter_mb_per_step']:.2f} | {r['ring_mb_sent_per_step']:.2f} | "
          f"{r['h1_wire_mb_sent_per_step']:.2f} | {model_ms} |")
print("\nThe h1 wire figure is 0 for one host (shared memory, no network). Commands are in the .jsonl, one per figure.")
PY
/usr/bin/python3 experiments/comm_model.py >> "${out%.jsonl}.md"
cat "${out%.jsonl}.md"
