#!/usr/bin/env python3
"""Compares two prep folders byte for byte, read independently of shopclip (h5py).

Prep split across ranks writes other shard files than prep in one process; what must be equal is
the content: for every split, the images in manifest order (pixels and ids) and the parameters.
Every split folder with a manifest.json is compared; a split present on one side only is a
difference. Exit 0 when equal, 1 with the first difference of each split otherwise.

Usage: compare_shards.py PREP_DIR_A PREP_DIR_B     (needs python3-h5py and python3-numpy)
"""
import json
import os
import sys

import h5py
import numpy as np


def read_split(folder):
    manifest = json.load(open(os.path.join(folder, "manifest.json"), encoding="utf-8"))
    pixels, ids = [], []
    for shard in manifest["shards"]:
        with h5py.File(os.path.join(folder, shard["file"]), "r") as f:
            if f["pixels"].shape[0] != shard["num_images"]:
                raise SystemExit(f"{folder}/{shard['file']}: {f['pixels'].shape[0]} images, "
                                 f"manifest says {shard['num_images']}")
            pixels.append(f["pixels"][...])
            ids.append(f["image_ids"][...])
    return manifest, np.concatenate(pixels), np.concatenate(ids)


def splits(prep_dir):
    return sorted(name for name in os.listdir(prep_dir)
                  if os.path.isfile(os.path.join(prep_dir, name, "manifest.json")))


def main():
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    names = splits(a_dir)
    problems = []
    if names != splits(b_dir):
        problems.append(f"splits differ: {names} vs {splits(b_dir)}")
    if not names:
        problems.append(f"no split with a manifest in {a_dir}")
    for name in names:
        if not os.path.isdir(os.path.join(b_dir, name)):
            continue
        (ma, pa, ia), (mb, pb, ib) = (read_split(os.path.join(d, name)) for d in (a_dir, b_dir))
        if ma["params"] != mb["params"]:
            problems.append(f"{name}: params {ma['params']} vs {mb['params']}")
        if ma["num_images"] != mb["num_images"] or pa.shape != pb.shape:
            problems.append(f"{name}: {pa.shape} vs {pb.shape} pixels")
            continue
        if not np.array_equal(ia, ib):
            first = int(np.flatnonzero(ia != ib)[0])
            problems.append(f"{name}: image id #{first} is {ia[first]} vs {ib[first]}")
        if pa.dtype != np.uint8 or pa.tobytes() != pb.tobytes():
            rows = np.flatnonzero((pa != pb).reshape(len(pa), -1).any(axis=1))
            problems.append(f"{name}: pixels of {len(rows)} images differ, first image #{rows[0]}"
                            if len(rows) else f"{name}: pixel dtype {pa.dtype}, expected uint8")
        print(f"compare_shards: {name}: {len(ia)} images, "
              f"{'equal' if not problems else 'checked'}")
    for problem in problems:
        print(f"compare_shards: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
