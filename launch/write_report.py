#!/usr/bin/env python3
"""Writes the demo job's short report (Markdown) from the files a run leaves behind.

Usage: write_report.py RUN_DIR DATA_DIR
Reads RUN_DIR/summary.json, RUN_DIR/eval/*.json and DATA_DIR/meta/synth.json; standard library only.
"""
import json
import os
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def row(name, s):
    return f"| {name} | {s['r1']:.2f} | {s['r5']:.2f} | {s['r10']:.2f} | {s['mean_recall']:.2f} |"


def main():
    run, data = sys.argv[1], sys.argv[2]
    summary = load(os.path.join(run, "summary.json"))
    synth = load(os.path.join(data, "meta", "synth.json"))
    valid = load(os.path.join(run, "eval", "valid.json"))["scoreJson"]
    test_path = os.path.join(run, "eval", "test_scored_with_answers.json")
    test = load(test_path) if os.path.exists(test_path) else None
    baselines_path = os.path.join(run, "eval", "single_attribute_valid.json")
    baselines = load(baselines_path) if os.path.exists(baselines_path) else {}

    out = [f"# shopclip demo run: {run}", ""]
    out.append("## What it did")
    splits = {s["split"]: s for s in synth["splits"]}
    out.append(f"- Built-in dataset `{data}`: scale `{synth['scale']}`, seed {synth['seed']}, "
               f"{synth['image_size']}px JPEGs made from Debian's Fashion-MNIST.")
    for name in ("train", "valid", "test"):
        if name in splits:
            s = splits[name]
            out.append(f"  - {name}: {s['images']} images, {s['queries']} queries, {s['pairs']} "
                       f"query-image pairs ({s['mean_relevant']:.2f} relevant images per query)")
    out.append(f"- Preprocessed to HDF5 shards; {summary['bad_rows']} bad input rows skipped "
               f"(listed in `{run}/bad_rows.jsonl`).")
    out.append(f"- Trained a {summary['parameters'] / 1e6:.2f}M-parameter dual encoder "
               f"({summary['forward_flops_per_sample'] / 1e6:.0f} MFLOP forward per sample with a "
               f"full-context query) for "
               f"{summary['steps']} steps / {summary['epochs_done']} epochs in "
               f"{summary['wall_seconds_total'] / 60:.1f} minutes on {summary['threads']} CPU threads "
               f"({summary['samples_per_second']:.0f} samples/s); stopped: {summary['stop_reason']}; "
               f"best epoch {summary['best_epoch']}.")
    out.append(f"- Evaluated the best checkpoint on valid (FAISS exact search, "
               f"{summary['valid_eval_seconds']:.1f} s) and wrote the test submission "
               f"`{run}/predictions/test.jsonl`.")
    out.append("")
    out.append("## Scores (MUGE official rules, x100)")
    out.append("| | R@1 | R@5 | R@10 | MeanRecall |")
    out.append("| --- | --- | --- | --- | --- |")
    out.append(row("valid, trained model", valid))
    if test and test.get("success"):
        out.append(row("test, trained model (scored with the held-back answers)", test["scoreJson"]))
    for attribute, s in baselines.items():
        out.append(row(f"valid, ranking by the true {attribute} alone", s))
    out.append("")
    out.append("Single-attribute rows rank the pool by one ground-truth attribute (matching images "
               "first, random order within): no single attribute solves the task.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
