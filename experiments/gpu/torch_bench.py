"""The plain-PyTorch side of the GPU comparison (issue 15): the same Chinese-CLIP model as
`shopclip bench cnclip` (tests/chinese_clip/reference_model.py, the architecture shopclip's parity
tests check its towers against), the same random inputs and the same measured work: a forward of
both towers without gradients, and a training pass (towers under bfloat16 autocast with --amp,
features to float32, symmetric InfoNCE at logit scale 100, backward). Prints one JSON line per
measurement. With --matmul, the card's 8192 x 8192 matrix-product rate in bf16 and fp32 instead.

Usage: torch_bench.py --vision-config V.json --text-config T.json --batch 256 [--amp] [--seconds 8]
       torch_bench.py --matmul
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "chinese_clip"))
from reference_model import CLIP  # noqa: E402


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def mean_seconds_per_call(fn, min_seconds, device="cuda", min_calls=2):
    fn()  # warm-up (allocator, kernels' autotuning)
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        fn()
        synchronize(device)
        calls += 1
    return (time.perf_counter() - start) / calls


def matmul_rates(seconds):
    n, rates = 8192, {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        rates[f"matmul_{name}_tflops"] = 2 * n**3 / mean_seconds_per_call(lambda: a @ b, seconds) / 1e12
    return rates


def bench_model(args):
    vision, text = json.load(open(args.vision_config)), json.load(open(args.text_config))
    torch.manual_seed(1)
    device = args.device
    model = CLIP(vision, text).to(device)
    batch, r = args.batch, vision["image_resolution"]
    images = torch.randn(batch, 3, r, r, device=device)
    tokens = torch.zeros(batch, args.context_length, dtype=torch.long)
    used = min(args.context_length, 20)
    first_word = min(1000, text["vocab_size"] // 2)
    tokens[:, :used] = torch.randint(first_word, text["vocab_size"], (batch, used))
    tokens = tokens.to(device)
    autocast = lambda: torch.autocast(device, dtype=torch.bfloat16, enabled=args.amp)  # noqa: E731

    def forward():
        with torch.no_grad(), autocast():
            model.encode_image(images)
            model.encode_text(tokens)

    def train():
        model.zero_grad(set_to_none=False)
        with autocast():
            image = model.encode_image(images).float()
            text_features = model.encode_text(tokens).float()
        image, text_features = F.normalize(image, dim=1), F.normalize(text_features, dim=1)
        logits = 100.0 * image @ text_features.t()
        labels = torch.arange(batch, device=device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        loss.backward()

    model.eval()
    forward_s = mean_seconds_per_call(forward, args.seconds, device) / batch
    model.train()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = mean_seconds_per_call(train, args.seconds, device) / batch
    return {"bench": "torch_cnclip", "torch": torch.__version__, "amp": args.amp, "batch": batch,
            "context_length": args.context_length,
            "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "forward_samples_per_s": 1 / forward_s, "train_samples_per_s": 1 / train_s,
            "device": device,
            "train_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vision-config")
    parser.add_argument("--text-config")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--context-length", type=int, default=52)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--matmul", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to rehearse the script")
    args = parser.parse_args()
    if args.matmul:
        result = {"bench": "torch_matmul", "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(), **matmul_rates(args.seconds)}
    else:
        result = bench_model(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
