"""Tables of a GPU check (experiments/gpu/device_check.sh) from the results.jsonl of one or more
device calls, later calls' rows after earlier ones. Writes Markdown on stdout.

Usage: summarize.py CALL_LABEL=results.jsonl [CALL_LABEL=results.jsonl ...]
"""
import json
import sys


def rows(pairs):
    for pair in pairs:
        label, path = pair.split("=", 1)
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a multi-line JSON document (shopclip version) is read elsewhere
            row["call"] = label
            yield row


def main(pairs):
    results = list(rows(pairs))
    matmul = [r for r in results if r.get("bench") == "torch_matmul"]
    print("## Tiny pipeline on cuda (prep, train 10 epochs, eval valid, test submission, score)\n")
    print("40 valid and 40 test queries: differences of a few points are noise at this size.\n")
    print("| call | run | valid MeanRecall | test MeanRecall (scored) | train samples/s | train s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        if r.get("bench") != "pipeline":
            continue
        s = r["summary"]
        print(f"| {r['call']} | {r['run']} | {s['valid']['mean_recall']:.2f} | "
              f"{r['test_scored']['score']:.2f} | {s['samples_per_second']:.0f} | "
              f"{s['train_seconds_this_process']:.1f} |")
    print("\n## Chinese-CLIP ViT-B/16 + RoBERTa-base, random weights, 52-token queries\n")
    if matmul:
        m = matmul[0]
        print(f"PyTorch's 8192³ matrix product on the same card, mean of timed calls: "
              f"bf16 {m['matmul_bf16_tflops']:.0f} TFLOP/s, fp32 {m['matmul_fp32_tflops']:.1f} "
              f"TFLOP/s (no TF32). shopclip's share column uses its own best-of-calls rate, "
              f"measured in the same process.\n")
    print("| call | code | precision | batch | forward samples/s | forward+backward samples/s "
          "| TFLOP/s (fwd+bwd) | share of matmul | peak memory (GiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    flop = None
    for r in results:
        if r.get("bench") == "cnclip":
            flop = r["forward_gflop_per_sample"]
            print(f"| {r['call']} | shopclip | {'bf16' if r['amp'] else 'fp32'} | {r['batch']} | "
                  f"{r['forward_samples_per_s']:.0f} | {r['train_samples_per_s']:.0f} | "
                  f"{r['train_gflops'] / 1000:.0f} | {100 * r['train_share_of_matmul']:.1f} % | "
                  f"{r['train_peak_rss_mib'] / 1024:.1f} |")
        elif r.get("bench") == "torch_cnclip":
            tflops = 3 * flop * r["train_samples_per_s"] / 1000 if flop else float("nan")
            print(f"| {r['call']} | PyTorch {r['torch']} | {'bf16' if r['amp'] else 'fp32'} | "
                  f"{r['batch']} | {r['forward_samples_per_s']:.0f} | "
                  f"{r['train_samples_per_s']:.0f} | {tflops:.0f} | — | "
                  f"{r['train_peak_mib'] / 1024:.1f} |")
    print("\n## bench_small training steps on cuda (random inputs, no data loading)\n")
    print("| call | code | precision | batch | samples/s | step ms | share of matmul |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if r.get("bench") == "train":
            print(f"| {r['call']} | shopclip | {'bf16' if r['amp'] else 'fp32'} | "
                  f"{r['batch_per_rank']} | {r['samples_per_s']:.0f} | {r['step_ms']:.1f} | "
                  f"{100 * r['share_of_matmul']:.1f} % |")
        elif r.get("bench") == "torch_small":
            print(f"| {r['call']} | PyTorch {r['torch']} | {'bf16' if r['amp'] else 'fp32'} | "
                  f"{r['batch']} | {r['samples_per_s']:.0f} | {r['step_ms']:.1f} | — |")


if __name__ == "__main__":
    main(sys.argv[1:])
