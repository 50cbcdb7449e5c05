#!/usr/bin/env python3
"""Writes the Markdown record of a finished `shopclip sweep` run to stdout: the command, the
machine, the sweep's results table, and its wall time against the trials' own (the difference is
the sweep's overhead: the data check, each trial's process start-up, the tables).

Usage: sweep_record.py SWEEP_DIR START_EPOCH_SECONDS END_EPOCH_SECONDS COMMAND [NOTE]
"""
import glob
import json
import os
import platform
import sys


def main():
    sweep, start, end, command = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    note = sys.argv[5] if len(sys.argv) > 5 else ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    trials = sorted(glob.glob(f"{sweep}/trials/*/summary.json"))
    inside = sum(json.load(open(t))["wall_seconds_total"] for t in trials)
    print(f"# Sweep on the demo dataset ({os.path.basename(os.path.normpath(sweep))})\n")
    print(f"Command: `{command}`. Machine: {cpu}, {os.cpu_count()} cores, kernel "
          f"{platform.release()}.{(' ' + note) if note else ''}\n")
    print(open(f"{sweep}/results.md").read())
    wall = end - start
    print(f"Sweep wall time {wall:.0f} s for {len(trials)} trials; the trials' own wall time "
          f"(train's wall_seconds_total: training and its evaluations, the final one included) "
          f"{inside:.0f} s; the rest, {wall - inside:.0f} s ({100 * (wall - inside) / wall:.1f} %), "
          "is the sweep's overhead: the data check before the trials, starting each trial's "
          "process (loading LibTorch, before train's clock starts) and the tables.")


if __name__ == "__main__":
    main()
