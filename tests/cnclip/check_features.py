#!/usr/bin/env python3
"""Checks `shopclip encode`'s image features against the PyTorch reference, end to end:

  check_features.py VISION.json TEXT.json CHECKPOINT.pt IMAGES.tsv IMAGE_FEATURES.jsonl [--normalize]

Decodes every image of the TSV with Pillow, converts it to RGB, resizes it straight to the model
resolution with bicubic filtering and normalises it with CLIP's mean and std (Chinese-CLIP's
preprocessing), runs the reference model loaded from the checkpoint, and compares with the
features shopclip wrote (same ids, same order, max abs difference <= 1e-4; with --normalize the
reference features are L2-normalised first). Exit 1 otherwise.
"""
import base64
import io
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import CLIP  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def main(argv):
    vision_path, text_path, checkpoint_path, tsv_path, features_path = argv[1:6]
    vision, text = json.load(open(vision_path)), json.load(open(text_path))
    model = CLIP(vision, text)
    state = torch.load(checkpoint_path, map_location="cpu")["state_dict"]
    model.load_state_dict({k[len("module."):]: v for k, v in state.items()})
    model.eval()
    r = vision["image_resolution"]
    ids, pixels = [], []
    for line in open(tsv_path, encoding="utf-8"):
        image_id, field = line.rstrip("\n").split("\t")
        image = Image.open(io.BytesIO(base64.urlsafe_b64decode(field))).convert("RGB")
        image = image.resize((r, r), Image.BICUBIC)
        array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
        ids.append(int(image_id))
        pixels.append(torch.from_numpy(array.transpose(2, 0, 1).copy()))
    with torch.no_grad():
        expected = model.encode_image(torch.stack(pixels))
    if "--normalize" in argv[6:]:
        expected = expected / expected.norm(dim=1, keepdim=True)
    rows = [json.loads(line) for line in open(features_path)]
    got_ids = [row["image_id"] for row in rows]
    if got_ids != ids:
        raise SystemExit(f"image ids differ: {got_ids[:5]}... vs {ids[:5]}...")
    got = torch.tensor([row["feature"] for row in rows])
    difference = (got - expected).abs().max().item()
    print(f"{len(ids)} image features, max abs difference {difference:.3g}")
    if difference > 1e-4:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv)
