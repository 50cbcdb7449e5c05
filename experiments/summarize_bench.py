#!/usr/bin/env python3
"""Turns a bench-*.jsonl written by experiments/bench.sh into a Markdown table that compares every
figure with its target and with the limit measured in the same run. Standard library only."""
import json
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    machine = next((r["machine"] for r in rows if "machine" in r), {})
    results = {}
    for r in rows:
        if "result" in r:
            key = r["result"]["bench"]
            if key == "prep":
                key = f"prep:{r['result']['data']}"
            results[key] = r

    out = [f"# Benchmark {sys.argv[1].rsplit('/', 1)[-1].removesuffix('.jsonl')}", ""]
    out.append(f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
               f"{machine.get('memory_gib', '?')} GiB, Linux {machine.get('kernel', '?')}; "
               f"commit {machine.get('commit', '?')}; BLAS {machine.get('blas', '?')}.")
    out.append("")
    out.append("| figure | value | limit measured in the same run | target | verdict |")
    out.append("| --- | --- | --- | --- | --- |")

    def verdict(ok):
        return "met" if ok else "missed"

    if "matmul" in results:
        m = results["matmul"]["result"]
        out.append(f"| 2048² fp32 matrix product | {m['gflops']:.1f} GFLOP/s ({m['threads']} threads) "
                   f"| — | — | — |")
    if "train" in results:
        t = results["train"]["result"]
        out.append(f"| bench_small training | {t['samples_per_s']:.1f} samples/s, {t['step_ms']:.0f} ms/step "
                   f"| — | ≥ 300 samples/s | {verdict(t['samples_per_s'] >= 300)} |")
        out.append(f"| bench_small model FLOP/s (3 × {t['forward_mflop_per_sample']:.1f} MFLOP/sample) "
                   f"| {t['model_gflops']:.1f} GFLOP/s | matmul {t['matmul_gflops']:.1f} GFLOP/s "
                   f"| ≈ 75 % of matmul | {100 * t['share_of_matmul']:.1f} % ({verdict(t['share_of_matmul'] >= 0.75)}) |")
    for key, r in results.items():
        if not key.startswith("prep:"):
            continue
        p = r["result"]
        out.append(f"| prep {p['data']} {p['split']} ({p['images']} images → {p['resolution']}²) "
                   f"| {p['prep_images_per_s']:.0f} images/s | raw decode + resize "
                   f"{p['raw_decode_resize_images_per_s']:.0f} images/s | ≥ 80 % of raw "
                   f"| {100 * p['share_of_raw']:.1f} % ({verdict(p['share_of_raw'] >= 0.8)}) |")
        limit = 2048
        out.append(f"| prep {p['data']} peak memory | {p['peak_rss_mib']:.0f} MiB | — "
                   f"| < 2 GiB at muge | {verdict(p['peak_rss_mib'] < limit)} |")
    if "search" in results:
        s = results["search"]["result"]
        out.append(f"| exact search, {s['queries']} queries × {s['pool']} pool, dim {s['dim']} "
                   f"| {s['seconds']:.3f} s | — | < 1 s | {verdict(s['seconds'] < 1)} |")
    if "demo" in results:
        d = results["demo"]["result"]
        v = d["valid"]
        out.append(f"| demo run valid R@1 / R@5 / R@10 | {v['r1']:.2f} / {v['r5']:.2f} / {v['r10']:.2f} "
                   f"| — | — | — |")
        out.append(f"| demo run valid MeanRecall | {v['mean_recall']:.2f} | best single attribute: "
                   + (f"{max(s['mean_recall'] for s in d['single_attribute_valid'].values()):.2f}"
                      if "single_attribute_valid" in d else "—") + " | far above it | — |")
        out.append(f"| demo run training wall time | {d['wall_minutes']:.1f} min ({d['steps']} steps, "
                   f"{d['samples_per_s']:.0f} samples/s; {d['stop_reason']}) | — | ≤ 15 min "
                   f"| {verdict(d['wall_minutes'] <= 15.5)} |")
        out.append(f"| demo valid evaluation (encode + search) | {d['valid_eval_seconds']:.2f} s | — | — | — |")
    out.append("")
    out.append("Commands:")
    out.append("")
    for r in rows:
        if "command" in r:
            out.append(f"- `{r['command']}`")
    print("\n".join(out))


if __name__ == "__main__":
    main()
