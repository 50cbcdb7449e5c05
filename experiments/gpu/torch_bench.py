"""The plain-PyTorch side of the GPU comparison (issue 15): the same Chinese-CLIP model as
`shopclip bench cnclip` (tests/chinese_clip/reference_model.py, the architecture shopclip's parity
tests check its towers against), the same random inputs and the same measured work: a forward of
both towers without gradients, and a training pass (towers under bfloat16 autocast with --amp,
features to float32, symmetric InfoNCE at logit scale 100, backward). Prints one JSON line per
measurement. With --matmul, the card's 8192 x 8192 matrix-product rate in bf16 and fp32 instead.

With --small, bench_small's training step (`shopclip bench train --config configs/bench_small.yaml`).

Usage: torch_bench.py --vision-config V.json --text-config T.json --batch 256 [--amp] [--seconds 8]
       torch_bench.py --small --batch 256 [--amp]
       torch_bench.py --matmul
"""
import argparse
import json
import math
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


def attention(q, k, v, keep):
    if hasattr(F, "scaled_dot_product_attention"):  # PyTorch 2.x: the fused kernels
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # PyTorch 1.x (rehearsals)
    return scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v


class SmallTextTower(torch.nn.Module):
    """bench_small's text tower (core/model/dual_encoder.cpp): token + position embeddings,
    pre-LayerNorm blocks, the first token's final state projected without bias."""

    def __init__(self, vocab, context, width, layers, heads, mlp, embed):
        super().__init__()
        self.heads = heads
        self.token_embedding = torch.nn.Embedding(vocab, width)
        self.positional_embedding = torch.nn.Parameter(torch.randn(context, width) * 0.01)
        self.blocks = torch.nn.ModuleList(torch.nn.ModuleDict({
            "ln1": torch.nn.LayerNorm(width), "qkv": torch.nn.Linear(width, 3 * width),
            "out": torch.nn.Linear(width, width), "ln2": torch.nn.LayerNorm(width),
            "fc1": torch.nn.Linear(width, mlp), "fc2": torch.nn.Linear(mlp, width)})
            for _ in range(layers))
        self.ln_final = torch.nn.LayerNorm(width)
        self.projection = torch.nn.Linear(width, embed, bias=False)

    def forward(self, tokens, pad_id=0):
        b, length = tokens.shape
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        keep = tokens.ne(pad_id).view(b, 1, 1, length)  # True: a key that takes part
        for block in self.blocks:
            q, k, v = block["qkv"](block["ln1"](x)).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            attended = attention(q, k, v, keep)
            x = x + block["out"](attended.transpose(1, 2).reshape(b, length, -1))
            x = x + block["fc2"](F.gelu(block["fc1"](block["ln2"](x))))
        return self.projection(self.ln_final(x[:, 0]))


class SmallModel(torch.nn.Module):
    """bench_small (configs/bench_small.yaml): CNN stages of two 3x3 conv + BatchNorm + ReLU (the
    first strided), global average pooling and a linear projection; the text tower above; a
    learned log logit scale."""

    def __init__(self, widths=(32, 64, 128, 256), embed=256, vocab=3000, context=32, width=256,
                 layers=2, heads=4, mlp=1024):
        super().__init__()
        stages, channels = [], 3
        for w in widths:
            for k in range(2):
                stages += [torch.nn.Conv2d(channels if k == 0 else w, w, 3, stride=2 if k == 0 else 1,
                                           padding=1, bias=False), torch.nn.BatchNorm2d(w),
                           torch.nn.ReLU()]
            channels = w
        self.convs = torch.nn.Sequential(*stages)
        self.image_projection = torch.nn.Linear(channels, embed)
        self.text = SmallTextTower(vocab, context, width, layers, heads, mlp, embed)
        self.log_logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, images):
        return self.image_projection(self.convs(images).mean((2, 3)))

    def encode_text(self, tokens):
        return self.text(tokens)


def bench_small(args):
    """Training steps as `shopclip bench train --config configs/bench_small.yaml`: random inputs
    (64x64 images, 18 real tokens of 32), InfoNCE both ways, AdamW (decay on matrices only)."""
    device, batch = args.device, args.batch
    torch.manual_seed(1)
    model = SmallModel().to(device)
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    plain = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.1},
                                   {"params": plain, "weight_decay": 0.0}], lr=1e-3)
    images = torch.randn(batch, 3, 64, 64, device=device)
    tokens = torch.zeros(batch, 32, dtype=torch.long)
    tokens[:, :18] = torch.randint(5, 3000, (batch, 18))
    tokens = tokens.to(device)
    labels = torch.arange(batch, device=device)

    def step():
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=args.amp):
            image = model.encode_image(images).float()
            text = model.encode_text(tokens).float()
        logits = model.log_logit_scale.exp() * F.normalize(image, dim=1) @ F.normalize(text, dim=1).t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        loss.backward()
        optimizer.step()

    model.train()
    seconds = mean_seconds_per_call(step, args.seconds, device)
    return {"bench": "torch_small", "torch": torch.__version__, "amp": args.amp, "batch": batch,
            "device": device, "parameters": sum(p.numel() for p in model.parameters()),
            "step_ms": 1000 * seconds, "samples_per_s": batch / seconds}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vision-config")
    parser.add_argument("--text-config")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--context-length", type=int, default=52)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--matmul", action="store_true")
    parser.add_argument("--small", action="store_true", help="bench_small's training step")
    parser.add_argument("--device", default="cuda",
                        help="cuda, or cpu (rehearsals; with --small, issue 19's CPU comparison)")
    args = parser.parse_args()
    if args.matmul:
        result = {"bench": "torch_matmul", "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(), **matmul_rates(args.seconds)}
    elif args.small:
        result = bench_small(args)
    else:
        result = bench_model(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
