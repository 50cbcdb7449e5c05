#!/usr/bin/env python3
"""Markdown record of experiments/serve_demo.sh: serving latency and throughput of a demo run and
of a run with a smaller text tower, at each client count, with where the time goes.

Usage: serve_record.py DIR SECONDS > record.md
"""
import os
import sys

from ensemble_record import cpu_name, load


def text_tower(run_dir):
    """The text tower's settings from the run's config.yaml (a flat scan: no YAML module)."""
    settings, section = {}, []
    for line in open(f"{run_dir}/config.yaml", encoding="utf-8"):
        stripped = line.rstrip()
        if not stripped or stripped.lstrip().startswith("#"):
            continue
        depth = (len(stripped) - len(stripped.lstrip())) // 2
        key, _, value = stripped.strip().partition(":")
        section = section[:depth] + [key]
        if section[:2] == ["model", "text"] and value.strip():
            settings[key] = value.strip()
    return settings


def main():
    folder, seconds = sys.argv[1], sys.argv[2]
    print("# Serving on the demo data: `shopclip serve`, latency and throughput")
    print()
    print(f"Command: `bash experiments/serve_demo.sh RUN {seconds}`; machine: {cpu_name()}, "
          f"{os.cpu_count()} cores; nothing else running but the load generator "
          "(experiments/serve_bench.py, Python, on the same cores: it takes CPU from the server, "
          "so the figures are a floor for a server with its own machine).")
    print("Each client sends POST /search (k = 10, the demo test queries in turn) back to back "
          f"over one keep-alive connection for {seconds} s after a warm-up; the index is the test "
          "pool's exact (Flat) index saved by `index build`; the server runs with --threads 2 "
          "and its defaults (batches of up to 32 queries, 2 ms wait).")
    print()
    print("| model | text tower | valid MeanRecall | clients | queries/s | p50 ms | p99 ms | "
          "mean ms | queue ms | text tower ms | search ms | rest ms (HTTP, JSON) | "
          "queries per forward |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("demo", "small"):
        figures = load(f"{folder}/figures-{name}.json")
        tower = text_tower(f"{folder}/{name}")
        tower_text = (f"width {tower.get('width')}, {tower.get('layers')} blocks, "
                      f"context {tower.get('context_length')}")
        valid = load(f"{folder}/{name}/eval/valid.json")["scoreJson"]["mean_recall"]
        for row in figures["rows"]:
            print(f"| {name} | {tower_text} | {valid:.2f} | {row['clients']} | "
                  f"{row['queries_per_second']:.0f} | {row['latency_ms_p50']:.2f} | "
                  f"{row['latency_ms_p99']:.2f} | {row['latency_ms_mean']:.2f} | "
                  f"{row['queue_ms']:.2f} | {row['text_tower_ms']:.2f} | "
                  f"{row['search_ms']:.2f} | {row['http_and_rest_ms']:.2f} | "
                  f"{row['mean_batch']:.1f} |")
    print()
    print("queue, text tower and search: the server's mean per request from /metrics (a "
          "batch's forward and search count once for each request in it); rest: the client's "
          "mean latency minus those three (HTTP parsing and writing, JSON, thread hand-offs, "
          "the client's own Python). The small run's quality is not the point here (it trained "
          "for minutes); what it shows is the text tower's share of the latency.")


if __name__ == "__main__":
    main()
