#!/usr/bin/env python3
"""On paper: the communication share of a data-parallel shopclip step at 2, 8 and 64 GPUs (Markdown).

Ring all-reduce of the gradients: each rank sends 2(N-1)/N x G bytes in
2(N-1) steps per bucket; the embedding exchange of the contrastive loss: image and text
embeddings all-gathered in forward and reduce-scattered in backward, (N-1) x b x d x 4 bytes
each, four times. Time = bytes / link rate + steps x latency. Each GPU is assumed to have its own
link at the rate named (inside one 8-GPU node NVLink is much faster, so the 8-GPU rows are an
upper bound there).

Exact inputs: parameters, forward FLOP per sample, embedding width (measured or counted by
shopclip: README "Benchmarks"). Assumptions (no GPU was measured): H100 SXM dense bf16 peak
989 TFLOP/s, of which a model reaches the fraction `mfu`; 10 us per ring step; gradients
all-reduced in fp32 (as shopclip does); forward + backward = 3 x forward FLOP; backward is 2/3
of the compute and can hide the all-reduce of every bucket but the last.
"""

PEAK = 989e12
ALPHA = 10e-6

MODELS = [
    # name, gradient bytes per step, forward FLOP/sample, embedding dim, batch per GPU, mfu
    # bench_small: 2.94 M parameters; 14.66 MB is what bench train measured handed to all-reduce
    # per step (the gradients plus the synchronised BatchNorm statistics).
    ("bench_small", 14.66e6, 208.6e6, 256, 256, 0.10),
    # Chinese-CLIP ViT-B/16 + RoBERTa-base: 188.9 M parameters, 44.1 GFLOP forward per sample.
    ("ViT-B/16 + RoBERTa-base", 188.9e6 * 4, 44.1e9, 512, 128, 0.40),
]


def step(model, gpus, gbps, bucket_mb):
    name, grad_bytes, flops, dim, batch, mfu = model
    bw = gbps * 1e9 / 8
    compute = 3 * flops * batch / (PEAK * mfu)
    buckets = max(1, -(-grad_bytes // (bucket_mb * 1e6)))
    ring = 2 * (gpus - 1)
    all_reduce = (gpus - 1) / gpus * 2 * grad_bytes / bw + buckets * ring * ALPHA
    embed = 4 * ((gpus - 1) * batch * dim * 4 / bw + (gpus - 1) * ALPHA)
    backward = compute * 2 / 3
    exposed = max(all_reduce - backward * (1 - 1 / buckets), all_reduce / buckets)
    return {
        "compute": compute, "all_reduce": all_reduce, "embed": embed, "buckets": buckets,
        "latency": buckets * ring * ALPHA,
        "share_serial": (all_reduce + embed) / (compute + all_reduce + embed),
        "share_overlap": (exposed + embed) / (compute + exposed + embed),
        "global_batch": gpus * batch,
    }


def main():
    print("\n## The cost model on paper (experiments/comm_model.py)\n")
    print(__doc__.split("\n\n", 1)[1].strip().replace("\n", " ") + "\n")
    for model in MODELS:
        name, grad_bytes, flops, dim, batch, mfu = model
        print(f"### {name}: {grad_bytes / 1e6:.1f} MB of gradients, {flops / 1e9:.2f} GFLOP forward per "
              f"sample, d = {dim}, {batch} per GPU, compute at {100 * mfu:.0f} % of peak\n")
        print("| GPUs | link | global batch | compute ms | all-reduce ms (of it latency) with 4 / 25 / 100 MB buckets | "
              "embedding exchange ms | communication share, no overlap (25 MB) | with overlap: 4 / 25 / 100 MB buckets |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for gpus in (2, 8, 64):
            for gbps in (100, 400):
                by_bucket = [step(model, gpus, gbps, mb) for mb in (4, 25, 100)]
                s = by_bucket[1]
                reduce_ms = " / ".join(f"{1e3 * x['all_reduce']:.1f} ({1e3 * x['latency']:.1f})" for x in by_bucket)
                overlap = " / ".join(f"{100 * x['share_overlap']:.0f} %" for x in by_bucket)
                print(f"| {gpus} | {gbps} Gb/s | {s['global_batch']} | {1e3 * s['compute']:.1f} | {reduce_ms} | "
                      f"{1e3 * s['embed']:.2f} | {100 * s['share_serial']:.0f} % | {overlap} |")
        b = batch
        print(f"\nContrastive loss memory per rank at 64 GPUs (B = {64 * b}): `local` mode "
              f"{3 * 2 * b * 64 * b * 4 / 2**20:.0f} MiB, `full` mode {3 * (64 * b) ** 2 * 4 / 2**20:.0f} MiB "
              "(three logit-sized buffers: logits, softmax, gradient).\n")


if __name__ == "__main__":
    main()
