#!/usr/bin/env python3
"""Markdown record of experiments/rerank_demo.sh: the learned reranker at each K on the test
split, against stage 1 alone (paired bootstrap from `shopclip compare`).

Usage: rerank_record.py DIR MINUTES RERANK_MINUTES > record.md
"""
import glob
import json
import os
import sys

from ensemble_record import cpu_name, load


def training_summary(run_dir):
    """(optimizer steps, first and last logged reranker loss) of the reranker's run."""
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    losses = [r["rerank"] for r in rows if "rerank" in r]
    steps = max((r.get("step", 0) for r in rows), default=0)
    return steps, losses[0] if losses else float("nan"), losses[-1] if losses else float("nan")


def main():
    folder, minutes, rerank_minutes = sys.argv[1], sys.argv[2], sys.argv[3]
    compares = sorted(glob.glob(f"{folder}/compare/learned-k*.json"),
                      key=lambda p: int(p.rsplit("-k", 1)[1].split(".")[0]))
    if not compares:
        sys.exit(f"no comparisons in {folder}/compare")
    base = load(compares[0])["a"]["scores"]
    steps, first_loss, last_loss = training_summary(f"{folder}/reranker")
    config = load(f"{folder}/out/learned-k32/rerank.json")["reranker"] if os.path.exists(
        f"{folder}/out/learned-k32/rerank.json") else None

    print(f"# The learned reranker on the demo data ({os.path.basename(folder)})")
    print()
    print(f"Command: `bash experiments/rerank_demo.sh {minutes} {rerank_minutes}`; machine: "
          f"{cpu_name()}, {os.cpu_count()} cores; nothing else running.")
    seed = "?"
    for line in open(f"{folder}/base/config.yaml", encoding="utf-8"):
        if line.strip().startswith("seed:"):  # run.seed, the only seed key of a run's config
            seed = line.split(":", 1)[1].strip()
            break
    print(f"Stage 1: bench_small (configs/demo.yaml, seed {seed}) trained for {minutes} minutes: test "
          f"R@1 {base['r1']:.2f}, R@5 {base['r5']:.2f}, R@10 {base['r10']:.2f}, MeanRecall "
          f"**{base['mean_recall']:.2f}**.")
    if config:
        print(f"Reranker: {config['layers']} cross-attention blocks of width {config['width']} "
              f"({config['heads']} heads), {config['image_tokens']} image tokens, trained for "
              f"{rerank_minutes} minutes on the frozen towers ({steps} steps; matching loss "
              f"{first_loss:.3f} at the first logged step, {last_loss:.3f} at the last), with the "
              f"stage-1 run's own hard negatives placed in each batch.")
    print("Lambda (s = s_dual + lambda s_rerank) was tuned on valid and applied unchanged to test; "
          "the test split is scored with its held-back answers (1,000 queries). Differences are "
          "paired bootstrap intervals over the test queries (`shopclip compare`, 10,000 "
          "resamples, 95 %).")
    print()
    print("| K | test MeanRecall | R@1 | R@5 | R@10 | difference from stage 1 [95 % CI] | p | "
          "lambda (valid MeanRecall) | stage-1 ceiling | ms per query added |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in compares:
        c = load(path)
        r = load(f"{c['b']['run']}/rerank.json")
        s, d = c["b"]["scores"], c["mean_recall_difference"]
        tuning = r.get("tuning") or {}
        print(f"| {r['stage1']['candidates']} | {s['mean_recall']:.2f} | {s['r1']:.2f} | "
              f"{s['r5']:.2f} | {s['r10']:.2f} | {d['mean']:+.2f} [{d['ci_low']:+.2f}, "
              f"{d['ci_high']:+.2f}] | {d['p_value']:.3f} | {r['lambda']:g} "
              f"({tuning.get('mean_recall', float('nan')):.2f}) | {r['stage1']['recall']:.1f} | "
              f"{r['timing']['rescore_ms_per_query']:.2f} |")
    print()
    print("Stage-1 ceiling: the share of test queries with a relevant image among the K "
          "candidates; no re-ordering reaches a higher R@10. ms per query added: the query's "
          "token states and one reranker forward over its K candidates, one query at a time on "
          "rank 0 (what a search box pays per request on top of stage 1); the pool's image "
          "tokens are computed once per pool and cached, not counted.")


if __name__ == "__main__":
    main()
