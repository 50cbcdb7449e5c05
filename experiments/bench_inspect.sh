#!/usr/bin/env bash
# Benchmark of issue 5: `shopclip data stats` and `shopclip data check` over a whole dataset at
# the `muge` scale (MUGE's sizes: ~190k images in three splits, ~260k queries), each in a child
# process: wall time, peak memory, images/s, and the share of the raw image-decode rate measured
# in the same run (both commands decode every image). Records experiments/results/inspect-<date>.*
# Usage: experiments/bench_inspect.sh [DATA_DIR]   (default: makes the muge-scale built-in dataset
#        in a temporary folder first, ~15 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
shopclip=${SHOPCLIP_BINARY:-build/shopclip}
data=${1:-}
if [ -z "$data" ]; then
  data=$(mktemp -d "${TMPDIR:-/tmp}/shopclip-muge-XXXXXX")
  trap 'rm -rf "$data"' EXIT
  "$shopclip" data synth --scale muge --out "$data"
fi
source experiments/record.sh
start_record inspect
record "$shopclip" bench stats --data "$data" --decode-images 20000
record "$shopclip" bench check --data "$data" --decode-images 20000
python3 - "$out" > "${out%.jsonl}.md" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
m = lines[0]["machine"]
print(f"# data stats and data check at the muge scale ({sys.argv[1]})\n")
print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, commit {m['commit']}.\n")
print("| command | images | input | wall | images/s | raw decode images/s (same run) | share | peak memory |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for row in lines[1:]:
    x = row["result"]
    print(f"| `{row['command']}` | {x['images']} | {x['input_mib']:.0f} MiB | {x['wall_s']:.1f} s | "
          f"{x['images_per_s']:.0f} | {x['raw_decode_images_per_s']:.0f} | {100 * x['share_of_raw']:.0f} % | "
          f"{x['peak_rss_mib']:.0f} MiB |")
PY
cat "${out%.jsonl}.md"
