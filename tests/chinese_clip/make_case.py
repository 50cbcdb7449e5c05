#!/usr/bin/env python3
"""Builds one parity case for shopclip's Chinese-CLIP towers with the PyTorch reference model:

  make_case.py VISION.json TEXT.json OUT_DIR [SEED]

writes OUT_DIR/checkpoint.pt (Chinese-CLIP's training-checkpoint layout, keys prefixed with
"module." as DistributedDataParallel saves them) and OUT_DIR/io.safetensors (input images and
tokens, and the reference's image and text features). Weights, BatchNorm statistics and
LayerNorm affine parameters are all random, so every one of them matters.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "launch"))
from convert_chinese_clip import write_safetensors  # noqa: E402
from reference_model import CLIP  # noqa: E402


def main(argv):
    vision_path, text_path, out_dir = argv[1:4]
    seed = int(argv[4]) if len(argv) > 4 else 0
    torch.manual_seed(seed)
    vision, text = json.load(open(vision_path)), json.load(open(text_path))
    model = CLIP(vision, text)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight") or ".ln_" in name and name.endswith("weight") or "bn" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    model.eval()
    resolution, context = vision["image_resolution"], 12
    images = torch.randn(3, 3, resolution, resolution)
    tokens = torch.randint(1, text["vocab_size"], (4, context))
    for row, length in enumerate([context, 7, 3, 1]):  # padding of every extent, none to most
        tokens[row, length:] = 0
    with torch.no_grad():
        image_features = model.encode_image(images)
        text_features = model.encode_text(tokens)
    os.makedirs(out_dir, exist_ok=True)
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "step": 10, "name": "parity", "state_dict": state,
                "optimizer": {"state": {}, "param_groups": []}}, os.path.join(out_dir, "checkpoint.pt"))
    write_safetensors(os.path.join(out_dir, "io.safetensors"),
                      {"images": images, "tokens": tokens, "image_features": image_features,
                       "text_features": text_features})


if __name__ == "__main__":
    main(sys.argv)
