#!/usr/bin/env python3
"""Markdown record of experiments/ensemble_demo.sh: every single run, fusion, soup and re-ranking
on the test split, against the best single run (paired bootstrap from `shopclip compare`).

Usage: ensemble_record.py DIR BEST_RUN MINUTES [RERANK_MINUTES] > record.md
"""
import glob
import json
import os
import platform
import subprocess
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_weights(record):
    return ", ".join(f"{m['weight']:.2f}" for m in record["members"])


def describe(out_dir):
    """(stage-1 ceiling, notes, ms per query) of an output folder."""
    if os.path.exists(f"{out_dir}/ensemble.json"):
        r = load(f"{out_dir}/ensemble.json")
        notes = f"{r['method']}, weights {fmt_weights(r)} ({r['weights_source']}"
        if r.get("tuning"):
            notes += f" on {r['tuning']['split']}: {r['tuning']['mean_recall']:.2f}"
        notes += ")"
        ceiling = r.get("stage1", {}).get("recall")
        return ceiling, notes, r["timing"]["fuse_ms_per_query"]
    if os.path.exists(f"{out_dir}/rerank.json"):
        r = load(f"{out_dir}/rerank.json")
        if r["method"] == "learned":
            notes = (f"learned reranker, K {r['stage1']['candidates']}, lambda {r['lambda']:g}")
            if len(r["runs"]) > 1:
                notes += (f", over the feature ensemble of {len(r['runs'])} runs (weights "
                          + ", ".join(f"{w:.2f}" for w in r["weights"]) + ")")
        else:
            notes = f"{r['method']}, beta {r['beta']:g}"
        if r.get("tuning"):
            notes += f" (tuned on {r['tuning']['split']}: {r['tuning']['mean_recall']:.2f})"
        notes += f"; {r['rescored_queries']} queries re-scored"
        if r.get("transductive"):
            notes += "; TRANSDUCTIVE"
        return r["stage1"].get("recall"), notes, r["timing"]["rescore_ms_per_query"]
    if os.path.exists(f"{out_dir}/soup.json"):
        r = load(f"{out_dir}/soup.json")
        kept = ", ".join(os.path.basename(os.path.dirname(os.path.dirname(p))) for p in r["kept"])
        alone = "; ".join(
            f"{os.path.basename(os.path.dirname(os.path.dirname(i['checkpoint'])))} "
            f"{i.get('soup_mean_recall', float('nan')):.2f}"
            for i in r["ingredients"] if "soup_mean_recall" in i)
        notes = f"{r['method']} soup of {kept}"
        if alone:
            notes += f" (valid MeanRecall as each was tried: {alone})"
        return None, notes, None
    return None, "single run", None


def main():
    folder, best, minutes = sys.argv[1], sys.argv[2], sys.argv[3]
    rerank_minutes = sys.argv[4] if len(sys.argv) > 4 else None
    compares = sorted(glob.glob(f"{folder}/compare/*.json"))
    if not compares:
        sys.exit(f"no comparisons in {folder}/compare")
    best_scores = load(compares[0])["a"]["scores"]
    rows = []
    for path in compares:
        c = load(path)
        name = os.path.splitext(os.path.basename(path))[0]
        out_dir = c["b"]["run"]
        ceiling, notes, ms = describe(out_dir)
        d = c["mean_recall_difference"]
        rows.append((name, c["b"]["scores"], d, ceiling, notes, ms))
    valid = {}
    for run in ("cnn-s1", "cnn-s2", "cnn-s3", "vit"):
        p = f"{folder}/{run}/eval/valid.json"
        if os.path.exists(p):
            valid[run] = load(p)["scoreJson"]["mean_recall"]

    print(f"# Ensembles, soups and re-ranking on the demo data ({os.path.basename(folder)})")
    print()
    command = f"bash experiments/ensemble_demo.sh {minutes}"
    if rerank_minutes is not None:
        command += f" DIR {rerank_minutes}"
    print(f"Command: `{command}`; machine: {cpu_name()}, {os.cpu_count()} cores; nothing else "
          "running.")
    print(f"Members: bench_small (configs/demo.yaml) seeds 1, 2, 3 and a ViT tower (64 patches of "
          f"8x8, width 192, 4 blocks), each trained for {minutes} minutes with the demo's "
          f"settings. Valid MeanRecall: " + ", ".join(f"{k} {v:.2f}" for k, v in valid.items())
          + ".")
    if rerank_minutes is not None:
        print(f"Learned reranker (learned-* rows): trained for {rerank_minutes} minutes on the "
              "best run's frozen towers (experiments/rerank_demo.sh); learned-ensemble uses the "
              "same reranker over the tuned feature ensemble's top 32.")
    print(f"Reference: the best single run on valid, **{best}**: test R@1 {best_scores['r1']:.2f}, "
          f"R@5 {best_scores['r5']:.2f}, R@10 {best_scores['r10']:.2f}, "
          f"MeanRecall {best_scores['mean_recall']:.2f}.")
    print("Every weight and beta was tuned on valid and applied unchanged to test; the test split "
          "is scored with its held-back answers (1,000 queries). Differences are paired "
          "bootstrap intervals over the test queries (`shopclip compare`, 10,000 resamples, 95 %).")
    print()
    print("| row | test MeanRecall | difference from the best single run [95 % CI] | p | "
          "stage-1 ceiling | ms per query (fusion / re-scoring) | what |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, scores, d, ceiling, notes, ms in sorted(rows, key=lambda r: -r[1]["mean_recall"]):
        ceiling_text = f"{ceiling:.1f}" if ceiling is not None else "—"
        ms_text = f"{ms:.3f}" if ms is not None else "—"
        print(f"| {name} | {scores['mean_recall']:.2f} | {d['mean']:+.2f} "
              f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] | {d['p_value']:.3f} | {ceiling_text} "
              f"| {ms_text} | {notes} |")
    print()
    print("Stage-1 ceiling: the share of test queries with a relevant image among the candidates "
          "(the union of the members' top 100 for score, rrf and borda; the top 100 for "
          "re-ranking); no re-ordering can reach a higher R@10 than it. Times are rank 0's "
          "fusion or re-scoring over the whole split divided by its queries (the encoding of "
          "the query by each member comes on top).")


if __name__ == "__main__":
    main()
