#!/usr/bin/env python3
"""Markdown record of experiments/bench_index.sh: one table per pool size, and per pool size the
setting with the lowest single-query p50 latency among those with recall@10 >= 0.95.

Usage: bench_index_record.py RESULT.json [RESULT.json ...] > record.md
"""
import json
import os
import sys

from ensemble_record import cpu_name


def main():
    results = [json.load(open(path)) for path in sys.argv[1:]]
    first = results[0]
    print("# FAISS indexes on a demo run's embeddings")
    print()
    print(f"Command: `bash experiments/bench_index.sh {first['run']}`; machine: {cpu_name()}, "
          f"{os.cpu_count()} cores, {first['threads']} threads; nothing else running.")
    print(f"Pool: the {first['split']} split's real image embeddings ({first['dim']} dims, unit "
          f"norm) plus random unit vectors (never relevant) up to each pool size; "
          f"{first['queries']} real queries. recall@10: the share of the exact top 10 an index "
          "returns; MeanRecall: the official score of its predictions (the random rows can "
          "only push relevant images out); latency: one query at a time; queries/s: all "
          "queries in one batch call. Size: FAISS's serialised index.")
    rows_by_pool = {}
    for result in results:
        for row in result["rows"]:
            rows_by_pool.setdefault(row["pool"], []).append(row)
    for pool, rows in sorted(rows_by_pool.items()):
        print()
        print(f"## {pool:,} rows")
        print()
        print("| index | search | build s | MiB | queries/s | p50 ms | p99 ms | recall@10 | "
              "MeanRecall (exact) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['index']} | {r['search_params'] or '—'} | {r['build_seconds']:.2f} | "
                  f"{r['size_mib']:.1f} | {r['queries_per_second']:,.0f} | "
                  f"{r['latency_ms_p50']:.3f} | {r['latency_ms_p99']:.3f} | "
                  f"{r['recall_at_10']:.4f} | {r['mean_recall']:.2f} "
                  f"({r['mean_recall_exact']:.2f}) |")
        good = [r for r in rows if r["recall_at_10"] >= 0.95]
        if good:
            best = min(good, key=lambda r: r["latency_ms_p50"])
            print()
            print(f"Fastest single query with recall@10 >= 0.95: **{best['index']}** "
                  f"{best['search_params'] or '(defaults)'} — p50 {best['latency_ms_p50']:.3f} ms, "
                  f"recall@10 {best['recall_at_10']:.4f}, {best['size_mib']:.1f} MiB, built in "
                  f"{best['build_seconds']:.1f} s.")


if __name__ == "__main__":
    main()
